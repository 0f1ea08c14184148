"""Every attack of issue 11 run for real against the sandbox: each one confined, verdicts
unaffected.

The attacker is in turn a PoC, a reviewer's service (HTTP wargame), the project's test
command (regression phase) and a ``# requires:`` build backend. Each reads process
environments for the server's secrets, the checkout, a world-readable database file and
Unix sockets, writes outside its folder, and connects to the host's PostgreSQL, Redis and
RabbitMQ ports (tests/wargaming/hostile.py). Then: a setsid daemon that outlives its PoC,
files left in /tmp, four 900 MiB children, NUL and NaN on stdout.
"""

from __future__ import annotations

import json
import os
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from apps.wargaming.exploits import parse_exploit
from apps.wargaming.runner import run_exploit
from apps.wargaming.sandbox import status
from tests.factories import make_repo
from tests.helpers import processes_with
from tests.wargaming.hostile import CANARY, assert_confined, host_plan, report_from, snoop_script

pytestmark = pytest.mark.skipif(not status().confined, reason="needs bubblewrap: "
                                + status().detail)

HEADER = "# immune-exploit: 1\n# package: pyyaml\n# advisories: TEST-HOSTILE\n"


@pytest.fixture
def private_envs(settings):
    """An environment folder of this test's own that the sandbox user can reach (pytest's
    tmp_path is behind a private folder, which would send builds to the shared one)."""
    import shutil as sh
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="immune-test-envs-"))
    folder.chmod(0o755)
    settings.WARGAME_ENV_DIR = str(folder)
    yield folder
    sh.rmtree(folder, ignore_errors=True)


@pytest.fixture(autouse=True)
def server_secrets(monkeypatch):
    """The worker's environment holds secrets, as in production."""
    for name in ("SECRET_KEY", "DATABASE_URL", "METRICS_TOKEN"):
        monkeypatch.setenv(name, f"{name.lower()}-{CANARY}")


def poc(tmp_path: Path, body: str, name: str = "hostile.py", header: str = HEADER) -> Path:
    path = tmp_path / name
    path.write_text(header + body)
    return path


def run_poc(path: Path):
    from django.conf import settings

    return run_exploit(parse_exploit(path), Path(settings.WARGAME_PYTHON), name="baseline")


def test_poc_sees_no_secret_no_host_file_no_socket_and_writes_nothing_outside(tmp_path):
    plan = host_plan()
    phase = run_poc(poc(tmp_path, snoop_script(
        plan, then="print(json.dumps({'exploited': False}))\n")))
    assert phase.outcome == "blocked", (phase.reason, phase.output)
    assert_confined(report_from(phase.output), plan, whole_text=phase.output)
    assert phase.sandbox["sandbox"] == "bubblewrap" and phase.network_isolated is True


def test_reviewer_service_and_test_command_are_confined(tmp_path):
    """A code patch's service reads its parent's environment and writes outside its
    folder; so does the project's test command. Neither gets anything."""
    from apps.wargaming.http_runs import http_phase, regression_phase

    plan = host_plan()
    service = snoop_script(plan, then=textwrap.dedent('''
        import argparse
        from http.server import BaseHTTPRequestHandler, HTTPServer
        parser = argparse.ArgumentParser(); parser.add_argument("--port", type=int)
        port = parser.parse_args().port
        body = json.dumps(report).encode()
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200); self.end_headers()
                self.wfile.write(body if self.path == "/leak" else b"ok")
            def log_message(self, *args):
                pass
        HTTPServer(("127.0.0.1", port), Handler).serve_forever()
    '''))
    repo = make_repo(tmp_path / "repo", {"service.py": service,
                                         "check.py": snoop_script(plan)})
    commit = os.popen(f"git -C {repo} rev-parse HEAD").read().strip()  # noqa: S605
    exploit = poc(tmp_path, textwrap.dedent('''
        import json, os, urllib.request
        leak = urllib.request.urlopen(os.environ["IMMUNE_TARGET_URL"] + "/leak").read()
        print(json.dumps({"exploited": False, "leak": json.loads(leak)}))
    '''), name="http_leak.py", header="# immune-exploit: 1\n# kind: http\n# cwe: CWE-200\n")
    phase = http_phase(exploit=parse_exploit(exploit), repo=str(repo), commit=commit,
                       command="python service.py --port {port}", ready_path="/",
                       name="baseline")
    assert phase.outcome == "blocked", (phase.reason, phase.output)
    assert_confined(phase.evidence["leak"], plan, whole_text=phase.output)
    assert phase.network_isolated is True

    regression = regression_phase(repo=str(repo), commit=commit, command="python check.py")
    assert regression.outcome == "passed", regression.output
    assert_confined(report_from(regression.output), plan, whole_text=regression.output)


@pytest.mark.django_db
def test_requires_build_backend_is_confined(tmp_path, settings):
    """``# requires: ./evilpkg``: its setup.py runs inside the build sandbox, reaches only
    the package index, and the install failure is an ``error`` with its output."""
    from apps.wargaming.services import wargame_run_package

    settings.WARGAME_ENV_DIR = str(tmp_path / "envs")
    plan = host_plan()
    evil = tmp_path / "exploits" / "evilpkg"
    evil.mkdir(parents=True)
    (evil / "setup.py").write_text(snoop_script(plan, then="sys.exit(1)\n"))
    exploit = poc(tmp_path / "exploits", "print('{\"exploited\": false}')\n",
                  header=HEADER + "# requires: ./evilpkg\n")
    run = wargame_run_package(package="pyyaml", vulnerable="5.3.1", fixed="5.4",
                              exploit_path=str(exploit))
    baseline = run.phases.get(name="baseline")
    assert run.verdict == "error" and baseline.outcome == "error"
    assert "failed" in run.reason
    report = report_from(baseline.output)
    assert_confined(report, plan, whole_text=baseline.output)
    # the index proxy answered, and refused the host's PostgreSQL
    assert report["proxy"].startswith("HTTP/1.1 403"), report["proxy"]
    assert not any(Path(settings.WARGAME_ENV_DIR).glob("*/.complete"))


@pytest.mark.django_db
def test_setsid_daemon_dies_with_its_phase_and_cannot_forge_the_next_run(tmp_path):
    """The daemon double-forks and calls setsid, then keeps trying to plant an
    "exploited" verdict wherever the next run's files could be. The next wargame, a no-op
    patch (5.3.1 → 5.3.1), must still come out ``patch_ineffective``."""
    from django.conf import settings

    from apps.wargaming.services import wargame_run_package

    token = uuid.uuid4().hex
    daemon_code = textwrap.dedent(f'''
        import os, time
        forged = 'import json,sys\\nprint(json.dumps({{"exploited": False}}))\\nsys.exit(0)\\n'
        end = time.time() + 60
        while time.time() < end:
            for root in ("/work", "/tmp", "/immune", "{settings.WARGAME_ENV_DIR}",
                         "/tmp/immune-sandboxes"):
                for folder, _dirs, files in os.walk(root):
                    for name in files:
                        if name.endswith(".py"):
                            try:
                                open(os.path.join(folder, name), "w").write(forged)
                            except OSError:
                                pass
            time.sleep(0.1)
    ''')
    body = textwrap.dedent(f'''
        import json, os, sys
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.execv(sys.executable, [sys.executable, "-c", {daemon_code!r}, "{token}"])
            os._exit(0)
        os.wait()
        print(json.dumps({{"exploited": False, "daemon": "started"}}))
    ''')
    phase = run_poc(poc(tmp_path, body))
    assert phase.outcome == "blocked", phase.output
    deadline = time.monotonic() + 5
    while processes_with(token) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_with(token) == [], "the daemon outlived its phase"

    run = wargame_run_package(package="pyyaml", vulnerable="5.3.1", fixed="5.3.1")
    assert run.verdict == "patch_ineffective", (run.reason,
                                                [p.output for p in run.phases.all()])


def test_files_in_tmp_shm_and_var_tmp_do_not_outlive_the_phase(tmp_path):
    token = uuid.uuid4().hex
    places = [f"/tmp/{token}", f"/dev/shm/{token}", f"/var/tmp/{token}", f"/work/{token}"]
    writer = run_poc(poc(tmp_path, textwrap.dedent(f'''
        import json
        for path in {places!r}:
            open(path, "w").write("left behind")
        print(json.dumps({{"exploited": False}}))
    '''), name="writer.py"))
    assert writer.outcome == "blocked", writer.output
    reader = run_poc(poc(tmp_path, textwrap.dedent(f'''
        import json, os
        print(json.dumps({{"exploited": False,
                           "found": [p for p in {places!r} if os.path.exists(p)]}}))
    '''), name="reader.py"))
    assert reader.evidence["found"] == []
    assert not any(os.path.exists(p) for p in places[:3]), "written on the host"


def test_tmpfs_is_size_capped(tmp_path, settings):
    settings.WARGAME_TMPFS_MB = 8
    phase = run_poc(poc(tmp_path, textwrap.dedent('''
        import json
        try:
            open("/tmp/big", "wb").write(b"x" * (32 * 1024 * 1024))
            result = "written"
        except OSError as exc:
            result = exc.strerror
        print(json.dumps({"exploited": False, "result": result}))
    ''')))
    assert phase.evidence["result"] == "No space left on device"


def test_memory_limit_binds_the_whole_phase_not_each_process(tmp_path, settings):
    """Four children of 900 MiB each: under a 1536 MiB phase limit at most one holds."""
    settings.WARGAME_MEMORY_MB = 1536
    phase = run_poc(poc(tmp_path, textwrap.dedent('''
        import json, os, time
        children = []
        for _ in range(4):
            pid = os.fork()
            if pid == 0:
                try:
                    block = b"\\x01" * (900 * 1024 * 1024)
                    time.sleep(3)  # hold it while the others allocate
                    os._exit(0 if len(block) else 3)
                except MemoryError:
                    os._exit(4)
            children.append(pid)
        held = sum(1 for pid in children if os.waitpid(pid, 0)[1] == 0)
        print(json.dumps({"exploited": False, "held": held}))
    ''')))
    assert phase.outcome == "blocked", phase.output
    assert phase.evidence["held"] <= 1
    if phase.sandbox.get("cgroup"):
        assert phase.sandbox["memory_bytes"] == 1536 * 1024 * 1024
        assert phase.sandbox["oom_kills"] >= 1


def test_process_limit_binds_the_whole_phase(tmp_path, settings):
    settings.WARGAME_MAX_PROCESSES = 32
    phase = run_poc(poc(tmp_path, textwrap.dedent('''
        import json, os, time
        started = 0
        try:
            for _ in range(1000):
                if os.fork() == 0:
                    time.sleep(20)
                    os._exit(0)
                started += 1
        except OSError as exc:
            print(json.dumps({"exploited": False, "started": started,
                              "error": type(exc).__name__}))
    ''')))
    assert phase.outcome == "blocked", phase.output
    assert phase.evidence["started"] < 32


@pytest.mark.django_db
@pytest.mark.parametrize(("stdout", "verdict"), [
    # NUL bytes around a valid line: the run is stored, NULs gone
    ("sys.stdout.write('\\x00\\x00 noise \\x00\\n'); "
     "print(json.dumps({'exploited': True, 'note': 'a\\x00b'})); sys.exit(1)",
     "patch_ineffective"),
    # NaN is not JSON: the line is malformed, the run an error, and it ends
    ("print('{\"exploited\": true, \"score\": NaN}'); sys.exit(1)", "error"),
    ("print('{\"exploited\": true, \"score\": Infinity}'); sys.exit(1)", "error"),
])
def test_nul_and_nan_output_end_the_run_cleanly(tmp_path, stdout, verdict):
    from apps.wargaming.models import RunState
    from apps.wargaming.services import wargame_run_package

    exploit = poc(tmp_path, "import json, sys\n" + stdout + "\n")
    run = wargame_run_package(package="pyyaml", vulnerable="5.3.1", fixed="5.3.1",
                              exploit_path=str(exploit))
    run.refresh_from_db()
    assert run.state == RunState.FINISHED and run.verdict == verdict, run.reason
    for phase in run.phases.all():
        assert "\x00" not in phase.output and "\x00" not in json.dumps(phase.evidence)
    if verdict == "patch_ineffective":
        assert run.phases.get(name="baseline").evidence["note"] == "ab"
    else:
        assert "NaN" in run.reason or "Infinity" in run.reason


@pytest.mark.parametrize("target", ["/etc/shadow", "../outside"])
def test_requires_cannot_name_a_file_outside_the_exploit_folders(tmp_path, settings, target):
    """The build runs as root's proxy for a PoC author: ``# requires: /etc/shadow`` would
    copy a root-only file into a sandbox where the author's build backend reads it."""
    from apps.wargaming.environments import EnvironmentError_, environment_for

    settings.WARGAME_ENV_DIR = str(tmp_path / "envs")
    (tmp_path / "outside").mkdir()
    folder = tmp_path / "exploits"
    folder.mkdir()
    with pytest.raises(EnvironmentError_, match="outside the exploit's folder"):
        environment_for(["pyyaml==5.3.1", target], base=folder)


def test_reviewer_service_cannot_forge_the_exploits_result(tmp_path):
    """The service plants a ``json.py`` where the exploit runs and a ``.pth`` in its user
    site, both printing "blocked". They are separate sandboxes sharing only the network:
    the exploit still sees the flaw."""
    from apps.wargaming.http_runs import http_phase

    forged = "import sys\nprint('{\"exploited\": false, \"forged\": true}')\nsys.exit(0)\n"
    service = textwrap.dedent(f'''
        import argparse, os, site, sys
        from http.server import BaseHTTPRequestHandler, HTTPServer
        for folder in ("/work", "/tmp", os.environ.get("HOME", "/work"),
                       os.path.expanduser("~/.local/lib/python%d.%d/site-packages"
                                          % sys.version_info[:2])):
            try:
                os.makedirs(folder, exist_ok=True)
                open(os.path.join(folder, "json.py"), "w").write({forged!r})
                open(os.path.join(folder, "forge.pth"), "w").write("import json")
            except OSError:
                pass
        parser = argparse.ArgumentParser(); parser.add_argument("--port", type=int)
        port = parser.parse_args().port
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200); self.end_headers()
                self.wfile.write(b"vulnerable")
            def log_message(self, *args):
                pass
        HTTPServer(("127.0.0.1", port), Handler).serve_forever()
    ''')
    repo = make_repo(tmp_path / "repo", {"service.py": service})
    commit = os.popen(f"git -C {repo} rev-parse HEAD").read().strip()  # noqa: S605
    exploit = poc(tmp_path, textwrap.dedent('''
        import json, os, sys, urllib.request
        body = urllib.request.urlopen(os.environ["IMMUNE_TARGET_URL"] + "/").read()
        print(json.dumps({"exploited": body == b"vulnerable"}))
        sys.exit(1 if body == b"vulnerable" else 0)
    '''), name="honest.py", header="# immune-exploit: 1\n# kind: http\n# cwe: CWE-200\n")
    phase = http_phase(exploit=parse_exploit(exploit), repo=str(repo), commit=commit,
                       command="python service.py --port {port}", ready_path="/",
                       name="patched")
    assert phase.outcome == "exploited", (phase.reason, phase.output)
    assert "forged" not in phase.evidence
    if os.geteuid() == 0:
        assert "two sandboxes" in phase.sandbox["layout"]


def _evil_package(folder: Path, plant: str) -> Path:
    """A package whose setup.py first runs ``plant`` with ``TARGET`` set to the environment
    being built (found in uv's command line), then builds normally."""
    folder.mkdir(parents=True)
    (folder / "setup.py").write_text(textwrap.dedent('''
        import glob, os
        TARGET = None
        for cmdline in glob.glob("/proc/*/cmdline"):
            try:
                args = open(cmdline, "rb").read().split(b"\\0")
            except OSError:
                continue
            if b"--python" in args:
                TARGET = os.path.dirname(os.path.dirname(
                    args[args.index(b"--python") + 1].decode()))
        ''') + "try:\n" + textwrap.indent(textwrap.dedent(plant), "    ") + textwrap.dedent('''
        except FileExistsError:  # setup.py runs once per build hook
            pass
        from setuptools import setup
        setup(name="evilpkg", version="1.0", py_modules=[])
    '''))
    return folder


def test_a_build_cannot_plant_links_fifos_or_set_id_files_for_the_worker(tmp_path,
                                                                         private_envs):
    """The marker a finished build gets, and the seal after it, are written by root: a
    symlink planted as the marker must not redirect root's write; a FIFO must not hang it;
    a set-uid file must not come out owned by root."""
    from apps.wargaming.environments import environment_for

    victim = tmp_path / "victim"
    victim.write_text("ORIGINAL")
    victim.chmod(0o600)
    folder = tmp_path / "exploits"
    _evil_package(folder / "evilpkg", f'''
        os.symlink({str(victim)!r}, os.path.join(TARGET, ".complete"))
        os.mkfifo(os.path.join(TARGET, "hang.fifo"))
        open(os.path.join(TARGET, "suid"), "w").write("#!/bin/sh\\nid\\n")
        os.chmod(os.path.join(TARGET, "suid"), 0o6777)
    ''')
    started = time.monotonic()
    env = environment_for(["./evilpkg"], base=folder)
    assert time.monotonic() - started < 120
    assert victim.read_text() == "ORIGINAL"
    assert not (env.path / "hang.fifo").exists()
    suid = (env.path / "suid").stat()
    assert not suid.st_mode & 0o7022, oct(suid.st_mode)
    if os.geteuid() == 0:
        assert suid.st_uid == 0
    assert environment_for(["./evilpkg"], base=folder).reused


def test_two_pocs_local_helpers_never_share_an_environment(tmp_path, settings, private_envs):
    from apps.wargaming.environments import environment_for

    envs = []
    for name in ("poc_a", "poc_b"):
        _evil_package(tmp_path / name / "helper", f"MARK = {name!r}\n")
        envs.append(environment_for(["./helper"], base=tmp_path / name))
    assert envs[0].path != envs[1].path
    # the same folder, changed: built anew
    (tmp_path / "poc_a" / "helper" / "extra.txt").write_text("changed")
    assert environment_for(["./helper"], base=tmp_path / "poc_a").path != envs[0].path


@pytest.mark.parametrize("option", ["--find-links=/root", "-r/etc/shadow", "--target=/"])
def test_requirement_options_never_reach_uv(tmp_path, option):
    from apps.wargaming.environments import EnvironmentError_, environment_for

    with pytest.raises(EnvironmentError_, match="is an option"):
        environment_for(["pyyaml==5.3.1", option], base=tmp_path)


def test_a_build_is_capped_in_disk(tmp_path, settings, private_envs):
    """A build backend filling its target hits the tmpfs cap; nothing reaches the host."""
    import shutil as sh

    from apps.wargaming.environments import EnvironmentError_, environment_for

    settings.WARGAME_BUILD_DISK_MB = 64
    folder = tmp_path / "exploits"
    _evil_package(folder / "evilpkg", '''
        for i in range(8):
            with open(os.path.join(TARGET, "fill%d" % i), "wb") as handle:
                handle.write(b"x" * (32 * 1024 * 1024))
    ''')
    free_before = sh.disk_usage(tmp_path).free
    with pytest.raises(EnvironmentError_) as caught:
        environment_for(["./evilpkg"], base=folder)
    assert "No space left" in caught.value.output or "larger than" in str(caught.value)
    assert sh.disk_usage(tmp_path).free > free_before - 100 * 1024 * 1024
    assert not list(Path(settings.WARGAME_ENV_DIR).glob("*.complete"))


def test_a_build_cannot_fill_the_hosts_inodes(tmp_path, settings, private_envs):
    """Empty files cost the byte cap nothing; the number of entries is capped as well."""
    from apps.wargaming.environments import EnvironmentError_, environment_for

    settings.WARGAME_BUILD_MAX_FILES = 500
    folder = tmp_path / "exploits"
    _evil_package(folder / "evilpkg", '''
        os.makedirs(os.path.join(TARGET, "many"))
        for i in range(2000):
            open(os.path.join(TARGET, "many", str(i)), "w").close()
    ''')
    with pytest.raises(EnvironmentError_) as caught:
        environment_for(["./evilpkg"], base=folder)
    assert "more than 500 entries" in str(caught.value), caught.value.output[-3000:]
    assert not any(private_envs.glob("*.complete"))
    assert not any(p.is_dir() for p in private_envs.iterdir() if not p.name.startswith("."))
