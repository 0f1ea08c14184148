"""The sandbox's own behaviour: time limits, malformed output, no silent downgrade, the
index proxy's one decision, and nothing left behind (attacks: test_sandbox_hostile.py)."""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from pathlib import Path

import pytest

from apps.wargaming import cgroups, sandbox
from apps.wargaming.exploits import parse_exploit
from apps.wargaming.index_proxy import IndexProxy
from apps.wargaming.runner import run_exploit

BLOCKED = ("# immune-exploit: 1\n# package: none\nimport json\n"
           "print(json.dumps({'exploited': False}))\n")


@pytest.fixture
def no_bwrap(settings):
    settings.WARGAME_BWRAP = "/nonexistent/bwrap"
    yield
    sandbox.reset_probe()


def test_without_bubblewrap_a_phase_is_an_error_not_a_weaker_run(tmp_path, no_bwrap):
    from django.conf import settings as live

    path = tmp_path / "poc.py"
    path.write_text(BLOCKED)
    phase = run_exploit(parse_exploit(path), Path(live.WARGAME_PYTHON), name="baseline")
    assert phase.outcome == "error"
    assert "sandbox unavailable" in phase.reason and "not installed" in phase.reason


def test_health_reports_the_missing_sandbox(no_bwrap):
    from apps.core import health

    component = health.run_check("sandbox")
    assert component.status == health.UNHEALTHY
    assert component.error == "SandboxUnavailable"


def test_the_operator_may_allow_unsandboxed_runs_and_the_run_says_so(tmp_path, settings,
                                                                   no_bwrap):
    from django.conf import settings as live

    from apps.core import health

    settings.WARGAME_ALLOW_UNSANDBOXED = True
    path = tmp_path / "poc.py"
    path.write_text(BLOCKED)
    phase = run_exploit(parse_exploit(path), Path(live.WARGAME_PYTHON), name="baseline")
    assert phase.outcome == "blocked", phase.output
    assert phase.sandbox["sandbox"] == "none (unsandboxed)"
    assert phase.network_isolated is False
    assert health.run_check("sandbox").status == health.DEGRADED


@pytest.mark.skipif(not sandbox.status().confined, reason="needs bubblewrap")
def test_health_reports_a_working_sandbox():
    from apps.core import health

    component = health.run_check("sandbox")
    assert component.status in (health.HEALTHY, health.DEGRADED)
    assert "bubblewrap" in component.backend


@pytest.mark.skipif(not sandbox.status().confined, reason="needs bubblewrap")
def test_a_phase_records_its_limits_and_leaves_no_cgroup_or_folder(tmp_path):
    from django.conf import settings as live

    # A phase names its control folder and its cgroup after the process that runs it (this
    # one): what other processes sandbox meanwhile (a parallel test worker, another run on
    # the machine) comes and goes beside it and is not looked at.
    def ours(paths) -> set[Path]:
        return {p for p in paths if f".{os.getpid()}." in p.name}

    before = ours(sandbox.work_base().iterdir())
    groups_before = ours(p for base in cgroups.detect().bases for p in base.iterdir())
    path = tmp_path / "poc.py"
    path.write_text(BLOCKED)
    phase = run_exploit(parse_exploit(path), Path(live.WARGAME_PYTHON), name="baseline")
    assert phase.outcome == "blocked"
    applied = phase.sandbox
    assert applied["sandbox"] == "bubblewrap"
    assert applied["timeout_s"] == live.WARGAME_PHASE_TIMEOUT_S
    assert applied["tmpfs_bytes"] == live.WARGAME_TMPFS_MB * 1024 * 1024
    if cgroups.detect().version:
        assert applied["memory_bytes"] == live.WARGAME_MEMORY_MB * 1024 * 1024
        assert applied["max_processes"] == live.WARGAME_MAX_PROCESSES
    assert ours(sandbox.work_base().iterdir()) <= before
    assert ours(p for base in cgroups.detect().bases for p in base.iterdir()) <= groups_before


def test_reaper_removes_stale_sandbox_folders():
    stale = Path(tempfile.mkdtemp(prefix="baseline-", dir=sandbox.work_base()))
    os.utime(stale, (1, 1))
    fresh = Path(tempfile.mkdtemp(prefix="baseline-", dir=sandbox.work_base()))
    try:
        counts = sandbox.reap_leftovers(older_than_s=3600)
        assert not stale.exists() and fresh.exists()
        assert counts["folders"] >= 1
    finally:
        fresh.rmdir()


def _ask(proxy_socket: Path, request: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(proxy_socket))
        sock.sendall(request)
        return sock.recv(200)


@pytest.mark.parametrize("request_line", [
    b"CONNECT 127.0.0.1:5432 HTTP/1.1",  # the host's PostgreSQL
    b"CONNECT localhost:443 HTTP/1.1",  # an allowed port on loopback
    b"CONNECT evil.example:443 HTTP/1.1",  # a host not on the list
    b"CONNECT pypi.org:22 HTTP/1.1",  # the index, another port
    b"GET http://pypi.org/simple/ HTTP/1.1",  # plain HTTP
])
def test_index_proxy_refuses_everything_but_the_index(tmp_path, request_line):
    with IndexProxy(tmp_path, {"pypi.org", "localhost"}) as proxy:
        answer = _ask(proxy.socket_path, request_line + b"\r\nHost: x\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 403"), answer
        assert proxy.refused


def test_index_proxy_refuses_an_allowed_name_that_resolves_to_loopback(tmp_path):
    with IndexProxy(tmp_path, {"localhost"}) as proxy:
        answer = _ask(proxy.socket_path, b"CONNECT localhost:443 HTTP/1.1\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 403")
        assert "loopback" in proxy.refused[0]


def test_runaway_poc_times_out(tmp_path, settings):
    from django.conf import settings as live

    settings.WARGAME_PHASE_TIMEOUT_S = 2
    path = tmp_path / "sleepy.py"
    path.write_text("# immune-exploit: 1\n# package: none\nimport time\ntime.sleep(60)\n")
    phase = run_exploit(parse_exploit(path), Path(live.WARGAME_PYTHON), name="baseline")
    assert phase.outcome == "timeout" and phase.exit_code is None
    assert phase.duration_s < 10


@pytest.mark.parametrize(("body", "reason"), [
    ("raise RuntimeError('boom')", "no JSON evidence line"),
    ("import json,sys\nprint(json.dumps({'exploited': True}))\nsys.exit(0)", "disagrees"),
    ("print('hello')", "no JSON evidence line"),
])
def test_misbehaving_output_is_an_error_not_a_verdict(tmp_path, body, reason):
    from django.conf import settings as live

    path = tmp_path / "bad.py"
    path.write_text("# immune-exploit: 1\n# package: none\n" + body + "\n")
    phase = run_exploit(parse_exploit(path), Path(live.WARGAME_PYTHON), name="baseline")
    assert phase.outcome == "error"
    assert reason in phase.reason
    json.dumps(phase.evidence)


@pytest.mark.django_db
def test_environments_behind_a_private_folder_move_where_the_sandbox_user_reaches(
        tmp_path, settings):
    """A configured environment folder the sandbox user cannot reach (e.g. under a 0700
    folder) is replaced, so a wargame does not fail with 'permission denied'."""
    from apps.wargaming.environments import env_root
    from apps.wargaming.services import wargame_run_package

    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    settings.WARGAME_ENV_DIR = str(private / "envs")
    if os.geteuid() != 0:
        assert env_root() == (private / "envs").resolve()
        return
    assert env_root() != (private / "envs").resolve()
    run = wargame_run_package(package="pyyaml", vulnerable="5.3.1", fixed="5.4")
    assert run.verdict == "patch_effective", [p.output for p in run.phases.all()]


def test_index_proxy_bounds_its_connections_and_its_refusal_log(tmp_path):
    from apps.wargaming.index_proxy import MAX_CONNECTIONS, MAX_REFUSALS_KEPT

    with IndexProxy(tmp_path, {"pypi.org"}) as proxy:
        for _ in range(MAX_REFUSALS_KEPT + 30):
            _ask(proxy.socket_path, b"CONNECT evil.example:443 HTTP/1.1\r\n\r\n")
        assert len(proxy.refused) == MAX_REFUSALS_KEPT + 1
        assert proxy.refused[-1] == "… and 30 more"
        idle = []
        for _ in range(MAX_CONNECTIONS + 8):  # connections that never send a request
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(str(proxy.socket_path))
            idle.append(sock)
        try:
            deadline = time.monotonic() + 10
            while "too many connections" not in " ".join(proxy.refused) and \
                    proxy._server.refused_total < MAX_REFUSALS_KEPT + 30 + 8 and \
                    time.monotonic() < deadline:
                time.sleep(0.05)
            assert proxy._server.refused_total >= MAX_REFUSALS_KEPT + 30 + 8
        finally:
            for sock in idle:
                sock.close()


def _dead_pid() -> int:
    import subprocess

    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_reaper_removes_what_a_dead_worker_left_at_once_and_spares_a_live_one():
    dead = Path(tempfile.mkdtemp(prefix=f"build.{_dead_pid()}.", dir=sandbox.work_base()))
    alive = Path(tempfile.mkdtemp(prefix=f"build.{os.getpid()}.", dir=sandbox.work_base()))
    os.utime(alive, (1, 1))  # old, but its worker (this process) is alive: a long build
    try:
        sandbox.reap_leftovers(older_than_s=3600)
        assert not dead.exists() and alive.exists()
    finally:
        alive.rmdir()


@pytest.mark.skipif(not cgroups.detect().version, reason="needs a writable cgroup hierarchy")
def test_reaper_kills_a_sandbox_whose_worker_died_before_bubblewrap_held_it():
    """A worker SIGKILLed while a sandbox starts: its processes are still in their cgroup,
    which names the dead worker; the reaper kills them and removes the group."""
    import subprocess

    support = cgroups.detect()
    group = cgroups.PhaseGroup(support, 64 * 1024 * 1024, 16)
    for base in support.bases:
        path = base / f"baseline.{_dead_pid()}.orphan"
        path.mkdir()
        group.paths.append(path)
    orphan = subprocess.Popen([*group.join_argv(), "sleep", "60"], start_new_session=True)
    deadline = time.monotonic() + 5
    while not group.pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert group.pids()
    assert cgroups.reap_stale(older_than_s=3600) >= 1
    assert orphan.wait(timeout=10) == -9
    assert not any(path.exists() for path in group.paths)


@pytest.mark.skipif(not sandbox.status().confined, reason="needs bubblewrap")
def test_http_phase_in_one_sandbox_where_no_shared_network_can_be_made(tmp_path, monkeypatch):
    """A worker that is not root cannot make a network namespace for two sandboxes: the
    service and its exploit then share one sandbox, and the phase says so."""
    import textwrap

    from apps.wargaming.http_runs import http_phase
    from tests.factories import git, make_repo

    monkeypatch.setattr(sandbox, "_can_share_network", lambda: False)  # as a non-root worker
    service = textwrap.dedent('''
        import argparse
        from http.server import BaseHTTPRequestHandler, HTTPServer
        parser = argparse.ArgumentParser(); parser.add_argument("--port", type=int)
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200); self.end_headers(); self.wfile.write(b"open")
            def log_message(self, *args):
                pass
        HTTPServer(("127.0.0.1", parser.parse_args().port), Handler).serve_forever()
    ''')
    repo = make_repo(tmp_path / "repo", {"service.py": service})
    exploit = tmp_path / "probe.py"
    exploit.write_text(textwrap.dedent('''\
        # immune-exploit: 1
        # kind: http
        # cwe: CWE-200
        import json, os, sys, urllib.request
        body = urllib.request.urlopen(os.environ["IMMUNE_TARGET_URL"] + "/").read()
        print(json.dumps({"exploited": body == b"open"}))
        sys.exit(1 if body == b"open" else 0)
    '''))
    phase = http_phase(exploit=parse_exploit(exploit), repo=str(repo),
                       commit=git(repo, "rev-parse", "HEAD").strip(),
                       command="python service.py --port {port}", ready_path="/",
                       name="baseline")
    assert phase.outcome == "exploited", (phase.reason, phase.output)
    assert "one sandbox" in phase.sandbox["layout"]
    assert phase.network_isolated is True


@pytest.mark.skipif(not sandbox._can_share_network(), reason="needs root and ip netns")
def test_reaper_deletes_the_network_namespace_of_a_dead_worker():
    import subprocess

    name = f"{sandbox.NETNS_PREFIX}{_dead_pid()}.orphan"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        assert sandbox.reap_leftovers(older_than_s=3600)["network_namespaces"] >= 1
        assert not Path(f"/run/netns/{name}").exists()
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)
