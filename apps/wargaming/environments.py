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
import tarfile
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import structlog
from django.conf import settings

from apps.wargaming.build_inputs import BuildInputError, check_option, checked_local, digest, unpack
from apps.wargaming.exploits import exploit_dirs
from apps.wargaming.index_proxy import IndexProxy
from apps.wargaming.sandbox import (
    Limits,
    Sandbox,
    SandboxUnavailable,
    give_to_sandbox,
    owned_folder,
    sandbox_uid,
    status,
    work_base,
)

log = structlog.get_logger(__name__)



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
    allowed = [p.resolve() for p in ([base] if base else []) + exploit_dirs()]
    local: dict[str, tuple[Path, str]] = {}
    try:
        for requirement in requirements:
            check_option(requirement)
            source, prefix = checked_local(requirement, base, allowed)
            if source is not None:
                local[requirement] = (source, prefix)
    except BuildInputError as exc:
        raise EnvironmentError_(str(exc)) from exc
    constraints = _constraints()
    # Local sources count by where they are and what they hold: two PoCs' "./helper"
    # never share an environment, and a changed folder is built anew.
    sources = [f"{req} {src} {digest(src)}" for req, (src, _) in sorted(local.items())]
    key = hashlib.sha256("\n".join([settings.WARGAME_PYTHON, settings.WARGAME_INDEX_URL,
                                    *requirements, "--", *sources, "--", constraints])
                         .encode()).hexdigest()[:20]
    root = env_root()
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)  # noqa: S103 (the sandbox user reads environments)
    path = root / key
    # The marker lives beside the environment, in a folder no sandbox ever sees: a build
    # cannot plant it (or a symlink or a FIFO in its place).
    marker = root / f"{key}.complete"
    with (root / f"{key}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.is_file() and path.is_dir():
            return Environment(path, path / "bin" / "python", tuple(requirements), reused=True)
        marker.unlink(missing_ok=True)
        shutil.rmtree(path, ignore_errors=True)
        try:
            _build(path, requirements, local, constraints)
            _seal(path)
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise
        marker.write_text("\n".join(requirements))
    return Environment(path, path / "bin" / "python", tuple(requirements), reused=False)


def _build(path: Path, requirements: list[str], local: dict[str, tuple[Path, str]],
           constraints: str) -> None:
    """uv in a sandbox (see ``_attempt``). First from wheels only (``--no-build``): no code
    of any package runs, so the download cache may be shared between builds and a new
    environment of known wheels is quick. When a requirement needs a build (an sdist, a
    local folder), again with build backends allowed and an empty private cache, so that no
    backend can poison what other builds trust."""
    if not local and status().confined:
        try:
            _attempt(path, requirements, {}, "", wheels_only=True)
            return
        except EnvironmentError_:
            shutil.rmtree(path, ignore_errors=True)
    _attempt(path, requirements, local, constraints, wheels_only=False)


def _shared_wheel_cache() -> Path:
    """uv's cache for wheel-only builds: written by uv alone, never by a build backend."""
    cache = env_root() / ".uv-cache-wheels"
    cache.mkdir(mode=0o700, exist_ok=True)
    if os.geteuid() == 0:
        os.chown(cache, sandbox_uid(), sandbox_uid())
    return cache


def _attempt(path: Path, requirements: list[str], local: dict[str, tuple[Path, str]],
             constraints: str, *, wheels_only: bool) -> None:
    """One build: the environment is built on a size-capped tmpfs at its own path, the
    package index (through the index proxy) is its only network, and it leaves the sandbox
    as a bounded tar stream (build_inputs.unpack)."""
    disk = settings.WARGAME_BUILD_DISK_MB * 1024 * 1024
    hosts = {urlsplit(settings.WARGAME_INDEX_URL).hostname or "", *settings.WARGAME_INDEX_HOSTS}
    # A build is part of its run: it gets the run's whole budget, never more.
    timeout = settings.WARGAME_RUN_TIMEOUT_S
    build_limits = Limits(timeout_s=timeout,
                          memory_bytes=settings.WARGAME_BUILD_MEMORY_MB * 1024 * 1024,
                          max_processes=max(settings.WARGAME_MAX_PROCESSES, 256),
                          max_file_bytes=disk, tmpfs_bytes=disk, per_process_memory=False)
    proxy_folder = Path(tempfile.mkdtemp(prefix=f"proxy.{os.getpid()}.", dir=work_base()))
    os.chmod(proxy_folder, 0o755)  # noqa: S103 (only the proxy's socket is in it)
    unpacked: dict = {}
    try:
        with IndexProxy(proxy_folder, hosts) as proxy, \
                Sandbox("build", build_limits, index_proxy=proxy) as box:
            if box.confined:
                target = box.tmpfs(str(path), disk)
            else:  # unsandboxed (operator's choice): built in place
                path.mkdir()
                give_to_sandbox(path)
                target = box.bind(path, writable=True)
            uv = box.bind(_uv(), "/opt/uv/uv")
            argv = [uv, "pip", "install", "--quiet", "--python", f"{target}/bin/python",
                    "--index-url", settings.WARGAME_INDEX_URL]
            if wheels_only:
                cache = box.bind(_shared_wheel_cache(), "/cache", writable=True)
                argv.append("--no-build")
            else:
                cache = box.tmpfs("/cache", disk)
            if constraints:
                # Build constraints apply to building sdists (PyYAML 5.3.1 needs Cython<3).
                argv += ["--build-constraint",
                         box.add_file("/immune/build-constraints.txt", constraints.encode())]
            argv += ["--", *(_inside(box, r, n, local.get(r))
                             for n, r in enumerate(requirements))]
            env = box.environment({
                "UV_CACHE_DIR": cache, "UV_NO_CONFIG": "1", "UV_PYTHON_DOWNLOADS": "never",
                "UV_LINK_MODE": "copy", "UV_NO_PROGRESS": "1",
                "HTTPS_PROXY": f"http://127.0.0.1:{box.proxy_port}",
                "HTTP_PROXY": f"http://127.0.0.1:{box.proxy_port}",
                **_certificates(box)})
            spec: dict = {"commands": [
                [uv, "venv", "--quiet", "--python", settings.WARGAME_PYTHON, target], argv]}
            reader = None
            if box.confined:
                read_fd, write_fd = box.export_pipe()
                spec["export"] = {"path": target, "fd": write_fd, "kill_others": True}
                path.mkdir(mode=0o755)
                reader = threading.Thread(
                    target=_unpack_into, daemon=True,
                    args=(read_fd, path, disk, settings.WARGAME_BUILD_MAX_FILES, unpacked))
                reader.start()
            result = box.start(box.relay_argv(spec), env=env).finish(timeout)
            if reader is not None:
                reader.join(timeout=60)
            refused = proxy.refused
    finally:
        shutil.rmtree(proxy_folder, ignore_errors=True)
    if result.timed_out:
        raise EnvironmentError_(f"installing {', '.join(requirements)} took longer than "
                                f"{timeout:.0f} s (WARGAME_RUN_TIMEOUT_S)")
    if "refused" in unpacked:  # the worker stopped reading: the export then fails too
        raise EnvironmentError_(f"the built environment was refused: {unpacked['refused']}")
    if result.exit_code != 0:
        output = (result.stderr or result.stdout)[-20_000:]
        if refused:
            output += "\n--- index proxy refused ---\n" + "\n".join(refused[-20:])
        raise EnvironmentError_(f"installing {', '.join(requirements)} failed", output)
    if "error" in unpacked:
        raise EnvironmentError_(f"the built environment was refused: {unpacked['error']}")
    if not (path / "bin" / "python").exists():
        raise EnvironmentError_("the build ended without an environment")


def _unpack_into(read_fd: int, path: Path, cap: int, max_entries: int,
                 outcome: dict) -> None:
    try:
        outcome["bytes"] = unpack(read_fd, path, cap, max_entries)
    except BuildInputError as exc:  # over a cap
        outcome["refused"] = str(exc)
    except (tarfile.TarError, OSError) as exc:  # no stream (a failed build) or a broken one
        outcome["error"] = str(exc) or type(exc).__name__


def _inside(box: Sandbox, requirement: str, index: int,
            local: tuple[Path, str] | None) -> str:
    """A local folder or file gets a private copy in the build's sandbox (its build backend
    may write beside it); anything else is passed as it is."""
    if local is None:
        return requirement
    source, prefix = local
    if source.is_dir():
        copy = box.private_copy(source, f"/src/{index}/{source.name}")
    else:
        copy = box.add_file(f"/immune/src/{index}/{source.name}", source.read_bytes())
    return f"{prefix}file://{copy}" if prefix else copy


def _certificates(box: Sandbox) -> dict[str, str]:
    """The host's CA bundle settings (an intercepting proxy's CA lives there); no secrets."""
    env = {}
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
        value = os.environ.get(name)
        if value and Path(value).exists():
            env[name] = value if value.startswith(("/etc/ssl", "/usr")) else box.bind(value)
    return env


def _seal(path: Path) -> None:
    """Built: owned by the worker, read-only for everyone else, no special files, no
    set-id bits. Nothing of the build runs any more, and symlinks are never followed."""
    for folder, dirs, files in os.walk(path, followlinks=False):
        for name in [*dirs, *files, ""]:
            item = os.path.join(folder, name) if name else folder
            info = os.lstat(item)
            if stat.S_ISLNK(info.st_mode):
                continue
            if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
                os.unlink(item)  # a FIFO, socket or device has no place in an environment
                continue
            if os.geteuid() == 0 and (info.st_uid or info.st_gid):
                os.lchown(item, 0, 0)
            mode = stat.S_IMODE(info.st_mode) & 0o755  # no set-id, no group/other write
            executable = stat.S_ISDIR(info.st_mode) or mode & 0o100
            os.chmod(item, mode | 0o644 | (0o111 if executable else 0), follow_symlinks=False)
