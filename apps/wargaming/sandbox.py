"""Running untrusted exploit code with limits.

Every exploit process gets: a wall-clock timeout (the whole process group is killed), an
address-space limit, a process-count limit, a file-size limit, no core dumps, a fresh
working directory, an environment holding nothing of the server's (no secrets), and, where
the kernel allows unprivileged user namespaces, a network namespace of its own in which
only loopback is up. When immune runs as root the exploit runs as ``nobody``, so the
process-count limit binds (root ignores RLIMIT_NPROC).
"""

from __future__ import annotations

import contextlib
import functools
import os
import resource
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

NOBODY = 65534
OUTPUT_LIMIT = 64_000  # characters of stdout/stderr kept on the phase


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 30.0
    memory_bytes: int = 1536 * 1024 * 1024
    max_processes: int = 128
    max_file_bytes: int = 64 * 1024 * 1024
    network: bool = False  # False: loopback only (own namespace) where possible


@dataclass
class SandboxResult:
    exit_code: int | None
    stdout: str
    stderr: str
    duration_s: float
    timed_out: bool
    network_isolated: bool
    as_user: str


@functools.lru_cache(maxsize=1)
def network_isolation_available() -> bool:
    """Whether ``unshare -rn`` works here (unprivileged user + network namespaces)."""
    if not (shutil.which("unshare") and shutil.which("ip")):
        return False
    argv = ["unshare", "-rn", "sh", "-c", "ip link set lo up"]
    if os.geteuid() == 0 and shutil.which("setpriv"):
        argv = [*_drop_privileges(), *argv]
    try:
        return subprocess.run(argv, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _drop_privileges() -> list[str]:
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]


def clean_environment(workdir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Only what a Python program needs; nothing from the server's environment."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(workdir),
           "TMPDIR": str(workdir), "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONUNBUFFERED": "1"}
    env.update(extra or {})
    return env


def _limit(limits: Limits):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.max_processes, limits.max_processes))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.max_file_bytes,
                                                   limits.max_file_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        cpu = int(limits.timeout_s) + 5
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))

    return apply


def prepare_workdir(workdir: Path) -> None:
    """The exploit's working directory must be writable by the user it runs as."""
    if os.geteuid() == 0:
        # The private temp folder around it only needs to be traversable.
        os.chmod(workdir.parent, 0o711)  # noqa: S103 (traverse only, not list)
        for path in [workdir, *workdir.rglob("*")]:
            os.chown(path, NOBODY, NOBODY)


def run_sandboxed(argv: list[str], *, workdir: Path, limits: Limits,
                  env: dict[str, str] | None = None) -> SandboxResult:
    prefix: list[str] = []
    as_user = "current user"
    if os.geteuid() == 0 and shutil.which("setpriv"):
        prefix += _drop_privileges()
        as_user = "nobody"
    isolated = False
    if not limits.network and network_isolation_available():
        prefix += ["unshare", "-rn", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"]
        isolated = True
    prepare_workdir(workdir)
    stdout_path, stderr_path = workdir.parent / "stdout.txt", workdir.parent / "stderr.txt"
    started = time.monotonic()
    timed_out = False
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        process = subprocess.Popen(
            [*prefix, *argv], cwd=workdir, env=env or clean_environment(workdir),
            stdin=subprocess.DEVNULL, stdout=out, stderr=err,
            preexec_fn=_limit(limits), start_new_session=True,  # noqa: PLW1509 (no threads)
        )
        try:
            process.wait(timeout=limits.timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            # The whole group goes: a PoC's children (or a fork bomb) die with it.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    duration = time.monotonic() - started
    return SandboxResult(
        exit_code=None if timed_out else process.returncode,
        stdout=_read(stdout_path), stderr=_read(stderr_path), duration_s=duration,
        timed_out=timed_out, network_isolated=isolated, as_user=as_user,
    )


def _read(path: Path) -> str:
    with path.open("rb") as handle:
        data = handle.read(OUTPUT_LIMIT + 1)
    text = data.decode("utf-8", errors="replace")
    return text if len(data) <= OUTPUT_LIMIT else text[:OUTPUT_LIMIT] + "\n… (truncated)"
