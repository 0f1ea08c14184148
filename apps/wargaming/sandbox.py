"""One confinement for every untrusted process a wargame starts (docs/wargaming.md, threat model).

PoCs, environment builds (uv and the build backends it runs), the service under test and the
project's test command all run through :class:`Sandbox`: bubblewrap with new user, PID,
IPC, UTS, cgroup and network namespaces; ``--die-with-parent`` and a PID-namespace init, so
nothing outlives the phase (a double-forked ``setsid`` daemon dies with the namespace); a
mount namespace built from nothing that holds ``/usr`` and the few ``/etc`` files a program
needs read-only, what the phase needs (the environment, the exploit, the tree under test),
a private size-capped tmpfs for the working directory, ``/tmp``, ``/var/tmp`` and
``/dev/shm``, a fresh ``/proc`` of its own PID namespace, and no ``/run``, no checkout, no
data folder, no host ``/tmp``. When immune runs as root the sandbox is entered as
``nobody``; limits hold for the whole phase through a cgroup (cgroups.py), rlimits cap each
process as well, and the wall clock kills the sandbox.

Where bubblewrap or user namespaces are missing a phase raises :class:`SandboxUnavailable`
(the run ends ``error``) unless the operator set ``WARGAME_ALLOW_UNSANDBOXED=1``; then it
runs with rlimits, a scrubbed environment and ``nobody`` only, and the run records that.

Around it: cgroups.py (phase-wide limits), sandbox_process.py (a started sandbox, bounded
output), sandbox_driver.py (runs inside: HTTP phase, build relay and export),
index_proxy.py (a build's only network), health.py (the health component).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import structlog
from django.conf import settings

from apps.wargaming import cgroups
from apps.wargaming.sandbox_process import OUTPUT_LIMIT, Running, SandboxResult

__all__ = ["OUTPUT_LIMIT", "Limits", "Running", "Sandbox", "SandboxResult", "SandboxUnavailable",
           "reap_leftovers", "shared_network", "status"]

log = structlog.get_logger(__name__)

NOBODY = 65534
DRIVER = Path(__file__).resolve().parent / "sandbox_driver.py"
SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"
#: What a program needs from /etc (libraries, certificates, time zone, name service
#: switch); nothing with credentials or host configuration.
ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "ssl",
             "ca-certificates", "localtime", "nsswitch.conf", "protocols", "services",
             "mime.types", "host.conf", "gai.conf", "python3", "python3.11")
SYSTEM_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
PASSWD = ("root:x:0:0:root:/root:/usr/sbin/nologin\n"  # noqa: S105 (no password: "x")
          "nobody:x:65534:65534:nobody:/work:/usr/sbin/nologin\n")
GROUP = "root:x:0:\nnogroup:x:65534:\n"
HOSTS = "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n"


class SandboxUnavailable(Exception):
    """No confinement here, and the operator did not allow running without it."""


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 30.0
    memory_bytes: int = 1536 * 1024 * 1024  # the whole phase (cgroup) and each process
    max_processes: int = 128  # the whole phase (cgroup pids)
    max_file_bytes: int = 64 * 1024 * 1024
    tmpfs_bytes: int = 256 * 1024 * 1024  # each of /work, /tmp, /var/tmp, /dev/shm
    per_process_memory: bool = True  # RLIMIT_AS too (off for builds: uv maps a lot)


@dataclass(frozen=True)
class Status:
    available: bool
    confined: bool  # False: running without bubblewrap (WARGAME_ALLOW_UNSANDBOXED=1)
    detail: str
    cgroup: str = ""


# --- What this machine offers ------------------------------------------------------------

def _bwrap() -> str | None:
    return shutil.which(settings.WARGAME_BWRAP)


def _privilege_drop() -> list[str]:
    if os.geteuid() != 0:
        return []
    uid = sandbox_uid()
    # --pdeathsig: the uid change clears a parent-death signal; set it again, so a worker
    # killed before bubblewrap sets its own still takes the sandbox with it.
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
            "--pdeathsig", "KILL", "--"]


def sandbox_uid() -> int:
    """The host uid sandboxes run as when immune is root (a dedicated one is best: any other
    process of that uid could ptrace into the sandboxes)."""
    return settings.WARGAME_SANDBOX_UID


@functools.lru_cache(maxsize=4)
def _bwrap_version(bwrap: str) -> str:
    done = subprocess.run([bwrap, "--version"], capture_output=True, text=True, timeout=10)
    return done.stdout.strip()


def _probe() -> tuple[bool, str]:
    bwrap = _bwrap()
    if bwrap is None:
        return False, f"bubblewrap ({settings.WARGAME_BWRAP}) is not installed"
    return _probe_bwrap(bwrap)


@functools.lru_cache(maxsize=4)
def _probe_bwrap(bwrap: str) -> tuple[bool, str]:
    """Whether a real confinement starts here (the same namespaces a phase uses)."""
    argv = [*_privilege_drop(), bwrap, *_namespace_args(), *_base_mounts_static(),
            "--", "/bin/true"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20,
                              env={"PATH": SANDBOX_PATH})
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"bubblewrap did not start: {exc}"
    if done.returncode != 0:
        return False, f"bubblewrap cannot create namespaces here: {done.stderr.strip()[:300]}"
    return True, _bwrap_version(bwrap)


def status() -> Status:
    """What a wargame phase gets on this machine now (health, and every run's record)."""
    ok, detail = _probe()
    support = cgroups.detect()
    cgroup = (f"cgroup {support.version}" if support.version
              else f"no cgroup ({support.reason}): per-process rlimits only")
    if ok:
        return Status(True, True, f"{detail}; {cgroup}", support.version)
    if settings.WARGAME_ALLOW_UNSANDBOXED:
        return Status(True, False, f"UNSANDBOXED (WARGAME_ALLOW_UNSANDBOXED=1): {detail}",
                      support.version)
    return Status(False, False, detail, support.version)


def reset_probe() -> None:
    _probe_bwrap.cache_clear()
    _disable_userns_for.cache_clear()
    cgroups.detect.cache_clear()


# --- The bubblewrap command line -----------------------------------------------------------

def _namespace_args(*, own_network: bool = True) -> list[str]:
    network = ["--unshare-net"] if own_network else []
    return ["--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts", *network,
            "--unshare-cgroup-try", "--uid", str(NOBODY), "--gid", str(NOBODY),
            "--hostname", "immune-sandbox", "--die-with-parent", "--new-session",
            *_disable_userns()]


def _disable_userns() -> list[str]:
    bwrap = _bwrap()
    return _disable_userns_for(bwrap) if bwrap else []


@functools.lru_cache(maxsize=4)
def _disable_userns_for(bwrap: str) -> list[str]:
    """No user namespaces inside the sandbox (less kernel to attack), where bwrap can."""
    argv = [*_privilege_drop(), bwrap, "--unshare-user", "--disable-userns",
            "--ro-bind", "/", "/", "--", "/bin/true"]
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        if subprocess.run(argv, capture_output=True, timeout=10).returncode == 0:
            return ["--disable-userns"]
    return []


def _base_mounts_static() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in SYSTEM_DIRS:
        host = Path("/") / name
        if host.is_symlink():
            args += ["--symlink", os.readlink(host), f"/{name}"]
        elif host.is_dir():
            args += ["--ro-bind", str(host), f"/{name}"]
    for name in ETC_FILES:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    return [*args, "--proc", "/proc", "--dev", "/dev"]


def interpreter_prefix(python: str) -> Path | None:
    """The installation an interpreter outside /usr lives in (it must be bound too)."""
    real = Path(os.path.realpath(python))
    if real.is_relative_to("/usr"):
        return None
    return real.parent.parent


# --- One sandbox ------------------------------------------------------------------------------

def owned_folder(path: Path, mode: int) -> Path:
    """``path`` as a real folder of ours with ``mode``: in a shared place such as /tmp,
    another local user must not have made it first (or made it a symlink)."""
    path.mkdir(parents=True, exist_ok=True)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        raise SandboxUnavailable(f"sandbox unavailable: {path} is not a folder owned by "
                                 f"uid {os.geteuid()}")
    os.chmod(path, mode)
    return path


def work_base() -> Path:
    """Where sandboxes keep their control folders: root-only, reaped by age."""
    base = Path(settings.WARGAME_WORK_DIR or Path(tempfile.gettempdir()) / "immune-sandboxes")
    # traverse only: the sandbox user reaches its binds, nobody lists the folders
    return owned_folder(base, 0o711)


class Sandbox:
    """One phase's confinement. Add files and binds, then ``run`` (once or more)::

        with Sandbox("baseline", limits) as box:
            script = box.add_file("/work/poc.py", data)
            box.bind(env_path)                      # read-only, same path inside
            result = box.run([python, script], cwd=box.path("/work"))

    ``path(p)`` is where the process finds sandbox path ``p``: ``p`` itself under
    bubblewrap, a host folder standing in for it when running unsandboxed.
    """

    def __init__(self, name: str, limits: Limits, *, index_proxy=None, netns: str = ""):
        st = status()
        if not st.available:
            raise SandboxUnavailable(f"sandbox unavailable: {st.detail}")
        self.name, self.limits, self.status = name, limits, st
        self.confined = st.confined
        # <what>.<worker pid>.<random>: the reaper removes it once that worker is gone.
        self.control = Path(tempfile.mkdtemp(prefix=f"{name}.{os.getpid()}.", dir=work_base()))
        os.chmod(self.control, 0o711)  # noqa: S103
        self.files = self.control / "in"  # read-only data for the sandbox (root-owned)
        self.files.mkdir(mode=0o755)
        self.mirror = self.control / "root"  # stand-in for the sandbox's tmpfs (unsandboxed)
        self._binds: list[tuple[str, str, bool]] = []
        self._tmpfs: list[tuple[str, int]] = []
        self._pass_fds: list[int] = []
        self._index_proxy = index_proxy
        self.netns = netns
        if not self.confined:
            for inside in ("work", "tmp"):
                (self.mirror / inside).mkdir(parents=True)
            give_to_sandbox(self.mirror)
            os.chmod(self.mirror, 0o755)  # noqa: S103
        self.add_file("/immune/driver.py", DRIVER.read_bytes())
        if index_proxy is not None:
            self.bind(index_proxy.socket_path.parent, "/immune/net")

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        shutil.rmtree(self.control, ignore_errors=True)

    # where things are
    def path(self, inside: str) -> str:
        if self.confined:
            return inside
        for source, dest, _writable in self._binds:
            if inside == dest or inside.startswith(dest.rstrip("/") + "/"):
                return source + inside[len(dest):]
        return str(self.mirror) + inside

    def add_file(self, inside: str, data: bytes) -> str:
        """A read-only file at ``inside`` (under /immune or /work)."""
        if not inside.startswith(("/immune/", "/work/")):
            raise ValueError(f"sandbox files go under /immune or /work, not {inside}")
        host = self.files / inside.lstrip("/")
        host.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        host.write_bytes(data)
        host.chmod(0o644)
        if not self.confined:
            mirror = self.mirror / inside.lstrip("/")
            mirror.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(host, mirror)
        return self.path(inside)

    def bind(self, source: str | Path, inside: str | None = None, *,
             writable: bool = False) -> str:
        """``source`` at ``inside`` (default: the same path); read-only unless asked."""
        source = str(source)
        if (inside or "").startswith("/immune/"):
            # /immune is itself a read-only bind: the mount point must exist beforehand.
            point = self.files / inside.lstrip("/")
            point.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
            if Path(source).is_dir():
                point.mkdir(exist_ok=True, mode=0o755)
            else:
                point.touch(exist_ok=True)
        self._binds.append((source, inside or source, writable))
        return self.path(inside or source)

    def private_copy(self, source: Path, inside: str) -> str:
        """A writable copy of a folder, for this sandbox alone (a tree under test)."""
        copy = self.control / "copies" / inside.strip("/").replace("/", "_")
        shutil.copytree(source, copy, symlinks=True)
        give_to_sandbox(copy)
        os.chmod(copy.parent, 0o711)  # noqa: S103
        return self.bind(copy, inside, writable=True)

    def environment(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """Only what a program needs; nothing from the server's environment."""
        env = {"PATH": SANDBOX_PATH, "HOME": self.path("/work"), "TMPDIR": self.path("/tmp"),
               "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}
        env.update(extra or {})
        return env

    def tmpfs(self, inside: str, size_bytes: int) -> str:
        """A private size-capped tmpfs at ``inside`` (a build's target: its disk cap)."""
        if not self.confined:
            return self.private_dir(inside)
        self._tmpfs.append((inside, size_bytes))
        return inside

    def private_dir(self, inside: str) -> str:
        """An empty writable folder on disk, for this sandbox alone (a build's cache)."""
        folder = self.control / "copies" / inside.strip("/").replace("/", "_")
        folder.mkdir(parents=True)
        give_to_sandbox(folder)
        os.chmod(folder.parent, 0o711)  # noqa: S103
        return self.bind(folder, inside, writable=True)

    @functools.cached_property
    def proxy_port(self) -> int:
        """Where the relay to the index proxy listens: 3128 in the sandbox's own network
        namespace; a free port when unsandboxed (the host's loopback is shared then)."""
        if self.confined:
            return 3128
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]

    def relay_argv(self, spec: dict) -> list[str]:
        """The driver running ``spec`` (sandbox_driver.py relay) with the index proxy on
        127.0.0.1:``proxy_port``."""
        return [settings.WARGAME_PYTHON, self.path("/immune/driver.py"), "relay",
                self.path("/immune/net/index-proxy.sock"), str(self.proxy_port),
                json.dumps(spec)]

    # running
    def _bwrap_args(self, cwd: str) -> list[str]:
        size = str(self.limits.tmpfs_bytes)
        args = [*_namespace_args(own_network=not self.netns), *_base_mounts_static()]
        for inside in ("/tmp", "/var/tmp", "/dev/shm", "/work"):
            args += ["--size", size, "--tmpfs", inside]
        for inside, size_bytes in self._tmpfs:
            args += ["--size", str(size_bytes), "--tmpfs", inside]
        args += ["--ro-bind", str(self.files / "immune"), "/immune"]
        args += self._data_file_binds()
        for source, dest, writable in self._binds:
            args += ["--bind" if writable else "--ro-bind", source, dest]
        etc = self.files / ".etc"
        etc.mkdir(exist_ok=True, mode=0o755)
        for name, text in (("passwd", PASSWD), ("group", GROUP), ("hosts", HOSTS)):
            (etc / name).write_text(text)
            (etc / name).chmod(0o644)
            args += ["--ro-bind", str(etc / name), f"/etc/{name}"]
        prefix = interpreter_prefix(settings.WARGAME_PYTHON)
        if prefix is not None:
            args += ["--ro-bind", str(prefix), str(prefix)]
        return [*args, "--remount-ro", "/", "--chdir", cwd]

    def _data_file_binds(self) -> list[str]:
        # Files added under /work (the PoC) are bound one by one on top of its tmpfs.
        root = self.files / "work"
        if not root.is_dir():
            return []
        return [arg for path in sorted(p for p in root.rglob("*") if p.is_file())
                for arg in ("--ro-bind", str(path), "/" + str(path.relative_to(self.files)))]

    def run(self, argv: list[str], *, cwd: str | None = None,
            env: dict[str, str] | None = None, timeout_s: float | None = None) -> SandboxResult:
        """Run ``argv`` with ``cwd`` (a ``path()``, default /work) to its end or its time."""
        running = self.start(argv, cwd=cwd, env=env)
        return running.finish(timeout_s or self.limits.timeout_s)

    def export_pipe(self) -> tuple[int, int]:
        """(read end, write end) of a pipe the sandboxed process inherits (as the write
        end's number): how a build hands its environment back as a bounded tar stream."""
        read, write = os.pipe()
        os.set_inheritable(write, True)
        self._pass_fds.append(write)
        return read, write

    def start(self, argv: list[str], *, cwd: str | None = None,
              env: dict[str, str] | None = None) -> Running:
        """Start ``argv`` in the sandbox; ``finish()`` the result to wait, kill and clean."""
        cwd = cwd or self.path("/work")
        limits = self.limits
        support = cgroups.detect()
        group = None
        applied = {"sandbox": "bubblewrap" if self.confined else "none (unsandboxed)",
                   "detail": self.status.detail, "timeout_s": limits.timeout_s,
                   "tmpfs_bytes": limits.tmpfs_bytes if self.confined else None,
                   "max_file_bytes": limits.max_file_bytes, "output_chars": OUTPUT_LIMIT}
        if support.version:
            group = cgroups.PhaseGroup.create(support, memory_bytes=limits.memory_bytes,
                                              max_processes=limits.max_processes,
                                              name=self.name)
            applied.update(cgroup=support.version, memory_bytes=limits.memory_bytes,
                           max_processes=limits.max_processes)
        else:
            applied.update(cgroup=None, memory_bytes_per_process=limits.memory_bytes,
                           max_processes_per_uid=limits.max_processes)
        rlimits = [f"--fsize={limits.max_file_bytes}", "--core=0",
                   f"--cpu={int(limits.timeout_s) + 5}"]
        if limits.per_process_memory:
            rlimits.append(f"--as={limits.memory_bytes}")
        if group is None:
            rlimits.append(f"--nproc={limits.max_processes}")
        network = []
        if self.netns and self.confined:
            # The phase's shared network namespace (a service and its exploit), entered as
            # root before the privileges are dropped.
            network = ["nsenter", f"--net={self.netns}", "--"]
        argv = [*(group.join_argv() if group else []), "prlimit", *rlimits, "--", *network,
                *_privilege_drop(), *self._command(argv, cwd)]
        applied["user"] = f"uid {sandbox_uid()}" if os.geteuid() == 0 else \
            f"uid {os.geteuid()}"
        applied["namespaces"] = "none" if not self.confined else (
            "user, pid, ipc, uts, cgroup, net (the phase's own, loopback only)" if self.netns
            else "user, pid, ipc, uts, cgroup, net (loopback only)")
        if self._index_proxy is not None:
            applied["network"] = "package index only, through the index proxy"
        try:
            process = subprocess.Popen(
                argv, cwd="/" if self.confined else cwd, env=env or self.environment(),
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                start_new_session=True, pass_fds=tuple(self._pass_fds))
        except BaseException:
            if group is not None:
                group.remove()
            raise
        finally:
            for fd in self._pass_fds:
                os.close(fd)  # the child holds the write ends now
            self._pass_fds = []
        return Running(process, group, applied, self.confined)

    def _command(self, argv: list[str], cwd: str) -> list[str]:
        if not self.confined:
            return argv
        if os.geteuid() == 0:
            # The sandbox user must reach every bind source (and nothing else of ours).
            for source, _dest, _writable in self._binds:
                _make_traversable(Path(source))
        return [_bwrap(), *self._bwrap_args(cwd), "--", *argv]


def give_to_sandbox(path: Path) -> None:
    """``path`` and everything in it owned by the sandbox uid (where we are root, the
    sandbox runs as that uid and must write there)."""
    if os.geteuid() != 0:
        return
    uid = sandbox_uid()
    for item in [path, *path.rglob("*")]:
        os.lchown(item, uid, uid)


def _make_traversable(path: Path) -> None:
    """Folders above a bind source let others through (x), without listing (r)."""
    for folder in path.parents:
        try:
            mode = folder.stat().st_mode
        except OSError:
            return
        if not mode & 0o001 and str(folder).startswith(str(work_base())):
            os.chmod(folder, mode | 0o011)  # noqa: S103 (traverse, not list)


NETNS_PREFIX = "immune."


def _can_share_network() -> bool:
    return os.geteuid() == 0 and bool(shutil.which("ip")) and bool(shutil.which("nsenter"))


@contextlib.contextmanager
def shared_network():
    """A network namespace of its own (loopback up) that several sandboxes enter: an HTTP
    phase's service and its exploit, each in a sandbox of its own. Needs root (``ip netns``);
    yields None where that is not possible (they then share one sandbox)."""
    if not (status().confined and _can_share_network()):
        yield None
        return
    name = f"{NETNS_PREFIX}{os.getpid()}.{uuid.uuid4().hex[:12]}"  # <what>.<pid>.<random>
    try:
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True,
                       timeout=10)
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True,
                       capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        # e.g. root without CAP_SYS_ADMIN in a container: one sandbox for both, recorded
        log.warning("wargame.shared_network_unavailable", error=str(exc)[:300])
        subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=10)
        yield None
        return
    try:
        yield f"/run/netns/{name}"
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=10)


def _reap_network_namespaces(cutoff: float) -> int:
    folder = Path("/run/netns")
    if not (folder.is_dir() and _can_share_network()):
        return 0
    removed = 0
    for path in folder.glob(f"{NETNS_PREFIX}*"):
        with contextlib.suppress(OSError):
            if cgroups.owner_gone(path.name, path.stat().st_mtime, cutoff):
                subprocess.run(["ip", "netns", "delete", path.name], capture_output=True,
                               timeout=10)
                removed += 1
    return removed


def reap_leftovers(older_than_s: float) -> dict:
    """Remove what lost phases left: control folders, cgroups (killing what is still in
    them) and network namespaces whose worker is gone, and any without a worker pid older
    than the cutoff. Bubblewrap ends a sandbox with its worker; this catches the rest."""
    cutoff = time.time() - older_than_s
    folders = 0
    base = work_base()
    for path in base.iterdir():
        with contextlib.suppress(OSError):
            if path.is_dir() and cgroups.owner_gone(path.name, path.stat().st_mtime, cutoff):
                shutil.rmtree(path, ignore_errors=True)
                folders += 1
    return {"folders": folders, "cgroups": cgroups.reap_stale(older_than_s),
            "network_namespaces": _reap_network_namespaces(cutoff)}
