"""HTTP wargames: the project's service started from each revision, attacked over loopback.

The baseline (default branch) and the patched revision are checked out in separate
temporary worktrees; each is started with the project's ``service_command`` on a free
loopback port, with a clean environment and the sandbox's limits, and the exploit for the
patch's CWE attacks both. The regression phase runs the project's ``test_command`` in the
patched worktree.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from django.conf import settings

from apps.reviews.patching.branches import detached_worktree
from apps.wargaming.exploits import Exploit
from apps.wargaming.runner import PhaseResult, limits, run_exploit
from apps.wargaming.sandbox import clean_environment

READY_TIMEOUT_S = 20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _argv(command: str, port: int) -> list[str]:
    argv = shlex.split(command.replace("{port}", str(port)))
    # "python" means the interpreter immune runs on, not whatever is first on PATH.
    if argv and argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    return argv


def _wait_ready(url: str, process: subprocess.Popen) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 (loopback)
                if response.status == 200:
                    return True
        except OSError:
            time.sleep(0.2)
    return False


def http_phase(*, exploit: Exploit, repo: str, commit: str, command: str, ready_path: str,
               name: str) -> PhaseResult:
    with detached_worktree(repo, commit) as worktree:
        port = free_port()
        service = subprocess.Popen(
            _argv(command, port), cwd=worktree, env=clean_environment(worktree),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            if not _wait_ready(f"http://127.0.0.1:{port}{ready_path}", service):
                output = service.stdout.read(8000).decode(errors="replace") \
                    if service.poll() is not None else ""
                return PhaseResult(name=name, outcome="error", output=output,
                                   reason=f"the service did not become ready on port {port}")
            # The exploit must reach the service on the host's loopback, so it cannot have
            # a network namespace of its own; the run records that.
            phase = run_exploit(exploit, Path(settings.WARGAME_PYTHON), name=name,
                                extra_env={"IMMUNE_TARGET_URL": f"http://127.0.0.1:{port}"},
                                http=True)
            phase.environment = [f"{command} @ {commit[:12]}"]
            return phase
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(service.pid, signal.SIGKILL)
            service.wait()


def regression_phase(*, repo: str, commit: str, command: str) -> PhaseResult:
    started = time.monotonic()
    with detached_worktree(repo, commit) as worktree:
        try:
            done = subprocess.run(_argv(command, 0), cwd=worktree,
                                  env=clean_environment(worktree), capture_output=True,
                                  text=True, timeout=limits().timeout_s * 4)
        except subprocess.TimeoutExpired:
            return PhaseResult(name="regression", outcome="timeout",
                               reason="the test command ran out of time")
    outcome = "passed" if done.returncode == 0 else "failed"
    return PhaseResult(name="regression", outcome=outcome, exit_code=done.returncode,
                       duration_s=round(time.monotonic() - started, 3),
                       output=(done.stdout + done.stderr)[-8000:],
                       reason="" if outcome == "passed" else "the test command failed")
