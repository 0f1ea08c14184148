"""Virtual environments for the package under test, made with uv and reused by content.

An environment is keyed by the hash of what it holds (requirements, build constraints,
interpreter), so a second run of the same pair reuses it; a lock file keeps two workers
from building the same one at once. An install failure is an ``error``, never a verdict.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import structlog
from django.conf import settings

log = structlog.get_logger(__name__)

INSTALL_TIMEOUT_S = 600


class EnvironmentError_(Exception):  # noqa: N801 (a builtin has the plain name)
    """The environment could not be built; ``output`` is the installer's."""

    def __init__(self, message: str, output: str = ""):
        super().__init__(message)
        self.output = output


@dataclass(frozen=True)
class Environment:
    path: Path
    python: Path
    requirements: tuple[str, ...]
    reused: bool


def _uv() -> str:
    local = Path(sys.executable).parent / "uv"
    return str(local) if local.exists() else (shutil.which("uv") or "uv")


def _constraints() -> str:
    path = settings.WARGAME_PIP_CONSTRAINTS
    return Path(path).read_text() if path and Path(path).is_file() else ""


def _reachable_by_others(path: Path) -> bool:
    """Whether every existing folder on the way to ``path`` lets other users through."""
    for folder in [path, *path.parents]:
        if folder.exists() and not folder.stat().st_mode & stat.S_IXOTH:
            return False
    return True


def env_root() -> Path:
    """Where environments live. The sandbox user (``nobody`` when immune runs as root) must
    reach them; a configured folder behind a private one (e.g. under /root) is replaced by
    a folder in the system's temp directory, and the log says so."""
    root = Path(settings.WARGAME_ENV_DIR).resolve()
    if os.geteuid() == 0 and not _reachable_by_others(root):
        fallback = Path(tempfile.gettempdir()) / "immune-wargame-envs"
        log.warning("wargame.env_dir_unreachable", configured=str(root), using=str(fallback))
        root = fallback
    return root


def environment_for(requirements: list[str]) -> Environment:
    requirements = sorted(dict.fromkeys(r.strip() for r in requirements if r.strip()))
    constraints = _constraints()
    interpreter = settings.WARGAME_PYTHON
    key = hashlib.sha256("\n".join([interpreter, *requirements, "--", constraints])
                         .encode()).hexdigest()[:20]
    root = env_root()
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)  # noqa: S103 (the sandbox user reads environments)
    path = root / key
    python = path / "bin" / "python"
    with (root / f"{key}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (path / ".complete").exists():
            return Environment(path, python, tuple(requirements), reused=True)
        shutil.rmtree(path, ignore_errors=True)
        _run([_uv(), "venv", "--quiet", "--python", interpreter, str(path)],
             "creating the environment")
        argv = [_uv(), "pip", "install", "--quiet", "--python", str(python)]
        if constraints:
            constraints_file = root / f"{key}.constraints.txt"
            constraints_file.write_text(constraints)
            # Build constraints apply to building sdists (PyYAML 5.3.1 needs Cython<3).
            argv += ["--build-constraint", str(constraints_file)]
        _run([*argv, *requirements], f"installing {', '.join(requirements)}")
        (path / ".complete").write_text("\n".join(requirements))
        for item in [path, *path.rglob("*")]:
            # The sandboxed exploit runs as another user and must read the environment.
            if not item.is_symlink():
                item.chmod(item.stat().st_mode | 0o044 | (0o011 if item.is_dir() else 0))
    return Environment(path, python, tuple(requirements), reused=False)


def _run(argv: list[str], what: str) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S,
                              env={**os.environ, "UV_NO_PROGRESS": "1"})
    except subprocess.TimeoutExpired as exc:
        raise EnvironmentError_(f"{what} took longer than {INSTALL_TIMEOUT_S} s") from exc
    if done.returncode != 0:
        raise EnvironmentError_(f"{what} failed", (done.stderr or done.stdout)[-20_000:])
