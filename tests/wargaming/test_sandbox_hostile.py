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
from tests.wargaming.hostile import CANARY, assert_confined, host_plan, report_from, snoop_script

pytestmark = pytest.mark.skipif(not status().confined, reason="needs bubblewrap: "
                                + status().detail)

HEADER = "# immune-exploit: 1\n# package: pyyaml\n# advisories: TEST-HOSTILE\n"


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


def _procs_with(token: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if token in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(proc.name)
            except OSError:
                continue
    return found


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
    while _procs_with(token) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _procs_with(token) == [], "the daemon outlived its phase"

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
