"""Virtual environments for the package under test, made with uv and reused by content.

An environment is keyed by the hash of what it holds (requirements, build constraints,
interpreter, index), so a second run of the same pair reuses it; a lock file keeps two
workers from building the same one at once. Building runs untrusted code (sdist build
backends, ``# requires:`` paths), so uv runs in the sandbox: the environment being built is
its only writable folder besides a private cache, the package index its only network
(index_proxy.py). A built environment is sealed read-only. An install failure is an
``error``, never a verdict.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import structlog
from django.conf import settings
from packaging.requirements import InvalidRequirement, Requirement

from apps.wargaming.exploits import exploit_dirs
from apps.wargaming.index_proxy import IndexProxy
from apps.wargaming.sandbox import (
    NOBODY,
    Limits,
    Sandbox,
    SandboxUnavailable,
    owned_folder,
    work_base,
)

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
        try:
            root = owned_folder(fallback, 0o755)
        except SandboxUnavailable as exc:
            raise EnvironmentError_(str(exc)) from exc
    return root


def environment_for(requirements: list[str], *, base: Path | None = None) -> Environment:
    """The environment holding ``requirements``, built in a sandbox when missing.

    ``base`` is the folder relative requirement paths are read from (the exploit's)."""
    requirements = sorted(dict.fromkeys(r.strip() for r in requirements if r.strip()))
    constraints = _constraints()
    interpreter = settings.WARGAME_PYTHON
    key = hashlib.sha256("\n".join([interpreter, settings.WARGAME_INDEX_URL, *requirements,
                                    "--", constraints]).encode()).hexdigest()[:20]
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
        path.mkdir()
        try:
            _build(path, requirements, constraints, base)
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise
        _seal(path)
        (path / ".complete").write_text("\n".join(requirements))
    return Environment(path, python, tuple(requirements), reused=False)


def _build(path: Path, requirements: list[str], constraints: str, base: Path | None) -> None:
    """uv in a sandbox: the environment is its only writable folder besides a private
    cache, and the package index (through the index proxy) its only network."""
    if os.geteuid() == 0:
        os.chown(path, NOBODY, NOBODY)
    hosts = {urlsplit(settings.WARGAME_INDEX_URL).hostname or "", *settings.WARGAME_INDEX_HOSTS}
    build_limits = Limits(timeout_s=INSTALL_TIMEOUT_S,
                          memory_bytes=settings.WARGAME_BUILD_MEMORY_MB * 1024 * 1024,
                          max_processes=max(settings.WARGAME_MAX_PROCESSES, 256),
                          max_file_bytes=1024 ** 3,
                          tmpfs_bytes=settings.WARGAME_TMPFS_MB * 1024 * 1024,
                          per_process_memory=False)
    proxy_folder = Path(tempfile.mkdtemp(prefix="proxy-", dir=work_base()))
    os.chmod(proxy_folder, 0o755)  # noqa: S103 (only the proxy's socket is in it)
    try:
        with IndexProxy(proxy_folder, hosts) as proxy, \
                Sandbox("build", build_limits, index_proxy=proxy) as box:
            box.bind(path, writable=True)
            uv = box.bind(_uv(), "/opt/uv/uv")
            cache = box.private_dir("/cache")
            argv = [uv, "pip", "install", "--quiet", "--python", str(path / "bin" / "python"),
                    "--index-url", settings.WARGAME_INDEX_URL]
            if constraints:
                # Build constraints apply to building sdists (PyYAML 5.3.1 needs Cython<3).
                argv += ["--build-constraint",
                         box.add_file("/immune/build-constraints.txt", constraints.encode())]
            argv += [_local(box, r, n, base) for n, r in enumerate(requirements)]
            env = box.environment({
                "UV_CACHE_DIR": cache, "UV_NO_CONFIG": "1", "UV_PYTHON_DOWNLOADS": "never",
                "UV_LINK_MODE": "copy", "UV_NO_PROGRESS": "1",
                "HTTPS_PROXY": "http://127.0.0.1:3128", "HTTP_PROXY": "http://127.0.0.1:3128",
                **_certificates(box)})
            commands = [[uv, "venv", "--quiet", "--python", settings.WARGAME_PYTHON, str(path)],
                        argv]
            result = box.run(box.relay_argv(commands), env=env)
            refused = proxy.refused
    finally:
        shutil.rmtree(proxy_folder, ignore_errors=True)
    if result.timed_out:
        raise EnvironmentError_(f"installing {', '.join(requirements)} took longer than "
                                f"{INSTALL_TIMEOUT_S} s")
    if result.exit_code != 0:
        output = (result.stderr or result.stdout)[-20_000:]
        if refused:
            output += "\n--- index proxy refused ---\n" + "\n".join(refused[-20:])
        raise EnvironmentError_(f"installing {', '.join(requirements)} failed", output)


def _local(box: Sandbox, requirement: str, index: int, base: Path | None) -> str:
    """A requirement naming a local folder or file gets a private copy of it in the build's
    sandbox (its build backend may write beside it); anything else is passed as it is."""
    source, prefix = _local_path(requirement, base)
    if source is None:
        return requirement
    if not source.exists():
        raise EnvironmentError_(f"requirement {requirement!r}: {source} does not exist")
    if not any(source.is_relative_to(folder) for folder in _exploit_folders(base)):
        # A PoC's author must not read the worker's files through the build (as root).
        raise EnvironmentError_(f"requirement {requirement!r}: {source} is outside the "
                                "exploit's folder and WARGAME_EXPLOIT_DIRS")
    inside = f"/src/{index}/{source.name}"
    if source.is_dir():
        copy = box.private_copy(source, inside)
    else:
        copy = box.add_file(f"/immune/src/{index}/{source.name}", source.read_bytes())
    return f"{prefix}file://{copy}" if prefix else copy


def _exploit_folders(base: Path | None) -> list[Path]:
    return [p.resolve() for p in ([base] if base else []) + exploit_dirs()]


def _local_path(requirement: str, base: Path | None) -> tuple[Path | None, str]:
    """(path, "name @ " prefix or "") of a local requirement, or (None, "")."""
    try:
        parsed = Requirement(requirement)
    except InvalidRequirement:
        parsed = None
    if parsed is not None:
        if parsed.url and parsed.url.startswith("file:"):
            return Path(unquote(urlsplit(parsed.url).path)).resolve(), f"{parsed.name} @ "
        return None, ""
    if requirement.startswith(("/", "./", "../", "~", "file:")):
        text = unquote(urlsplit(requirement).path) if requirement.startswith("file:") \
            else requirement
        path = Path(text).expanduser()
        if not path.is_absolute():
            path = (base or Path.cwd()) / path
        return path.resolve(), ""
    return None, ""


def _certificates(box: Sandbox) -> dict[str, str]:
    """The host's CA bundle settings (an intercepting proxy's CA lives there); no secrets."""
    env = {}
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
        value = os.environ.get(name)
        if value and Path(value).exists():
            env[name] = value if value.startswith(("/etc/ssl", "/usr")) else box.bind(value)
    return env


def _seal(path: Path) -> None:
    """Built: owned by root where we are root, and read-only for everyone else."""
    for item in [path, *path.rglob("*")]:
        if os.geteuid() == 0:
            os.lchown(item, 0, 0)
        if not item.is_symlink():
            mode = item.stat().st_mode & ~0o022
            item.chmod(mode | 0o044 | (0o011 if item.is_dir() or mode & 0o100 else 0))
