"""Memory and process-count limits for a whole sandboxed phase, with cgroups.

rlimits bind one process at a time (four children of 1 GiB each all fit under a 1.5 GiB
``RLIMIT_AS``); a cgroup binds the phase: every process the PoC, build or service starts
is charged to the same group. cgroup v2 is used where ``/sys/fs/cgroup`` is a unified
hierarchy offering the ``memory`` and ``pids`` controllers; otherwise the v1 ``memory``
and ``pids`` hierarchies (mounted and writable by root on our machines). Neither available
(no root, nothing delegated): ``detect()`` says why and the sandbox falls back to rlimits,
which the run records.

A process joins its group by writing its own pid to ``cgroup.procs`` before it execs the
sandbox (``join_argv``), so nothing it starts can escape the limit by forking first.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
GROUP = "immune-wargames"  # our parent group in each hierarchy


@dataclass(frozen=True)
class Support:
    version: str  # "v2", "v1" or "" (none)
    bases: tuple[Path, ...] = ()  # our parent group(s): one per hierarchy
    reason: str = ""


def _writable(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK)


def _v2_support() -> Support | None:
    controllers = ROOT / "cgroup.controllers"
    if not controllers.is_file():
        return None
    available = set(controllers.read_text().split())
    if not {"memory", "pids"} <= available:
        return Support("", reason=f"cgroup v2 without memory/pids controllers ({available})")
    base = ROOT / GROUP
    try:
        base.mkdir(exist_ok=True)
        (ROOT / "cgroup.subtree_control").write_text("+memory +pids")
        (base / "cgroup.subtree_control").write_text("+memory +pids")
    except OSError as exc:
        return Support("", reason=f"cgroup v2 not writable: {exc.strerror}")
    return Support("v2", (base,))


def _v1_support() -> Support:
    memory, pids = ROOT / "memory", ROOT / "pids"
    if not (_writable(memory) and _writable(pids)):
        return Support("", reason="no writable cgroup v1 memory and pids hierarchies")
    bases = []
    try:
        for hierarchy in (memory, pids):
            base = hierarchy / GROUP
            base.mkdir(exist_ok=True)
            bases.append(base)
        # Children inherit the parent's hierarchical accounting only with use_hierarchy.
        with contextlib.suppress(OSError):
            (memory / GROUP / "memory.use_hierarchy").write_text("1")
    except OSError as exc:
        return Support("", reason=f"cgroup v1 not writable: {exc.strerror}")
    return Support("v1", tuple(bases))


@functools.lru_cache(maxsize=1)
def detect() -> Support:
    v2 = _v2_support()
    if v2 is not None and v2.version:
        return v2
    v1 = _v1_support()
    if v1.version:
        return v1
    return Support("", reason="; ".join(s.reason for s in (v2, v1) if s and s.reason))


@dataclass
class PhaseGroup:
    """One phase's cgroup (a directory per hierarchy)."""

    support: Support
    memory_bytes: int
    max_processes: int
    paths: list[Path] = field(default_factory=list)

    @classmethod
    def create(cls, support: Support, *, memory_bytes: int, max_processes: int,
               name: str = "") -> PhaseGroup:
        group = cls(support, memory_bytes, max_processes)
        # The worker's pid in the name: the reaper knows a group whose worker is gone.
        leaf = f"{name or 'phase'}.{os.getpid()}.{uuid.uuid4().hex[:12]}"
        try:
            for base in support.bases:
                path = base / leaf
                path.mkdir()
                group.paths.append(path)
            group._configure()
        except OSError:
            group.remove()
            raise
        return group

    def _configure(self) -> None:
        if self.support.version == "v2":
            path = self.paths[0]
            (path / "memory.max").write_text(str(self.memory_bytes))
            with contextlib.suppress(OSError):  # no swap accounting: nothing to cap
                (path / "memory.swap.max").write_text("0")
            (path / "pids.max").write_text(str(self.max_processes))
            return
        memory, pids = self.paths
        (memory / "memory.limit_in_bytes").write_text(str(self.memory_bytes))
        with contextlib.suppress(OSError):  # swap accounting off: memory alone binds
            (memory / "memory.memsw.limit_in_bytes").write_text(str(self.memory_bytes))
        (pids / "pids.max").write_text(str(self.max_processes))

    def procs_files(self) -> list[str]:
        return [str(path / "cgroup.procs") for path in self.paths]

    def join_argv(self) -> list[str]:
        """A prefix that moves the process into this group, then execs the rest."""
        script = ('n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 125; '
                  'shift; n=$((n-1)); done; exec "$@"')
        files = self.procs_files()
        return ["/bin/sh", "-c", script, "immune-cgroup-join", str(len(files)), *files]

    def pids(self) -> set[int]:
        found: set[int] = set()
        for path in self.paths:
            with contextlib.suppress(OSError):
                found |= {int(p) for p in (path / "cgroup.procs").read_text().split()}
        return found

    def kill_all(self, wait_s: float = 5.0) -> int:
        """SIGKILL whatever is still in the group; how many were found."""
        killed = 0
        if self.support.version == "v2" and self.paths:
            with contextlib.suppress(OSError):
                (self.paths[0] / "cgroup.kill").write_text("1")
        deadline = time.monotonic() + wait_s
        while (pids := self.pids()) and time.monotonic() < deadline:
            for pid in pids:
                if pid <= 0:  # v2 lists tasks of other PID namespaces as 0: never kill(0)
                    continue
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
                    killed += 1
            time.sleep(0.05)
        return killed

    def stats(self) -> dict:
        """Peak memory and out-of-memory kills, recorded on the phase."""
        stats: dict = {}
        if not self.paths:
            return stats
        if self.support.version == "v2":
            path = self.paths[0]
            stats["memory_peak_bytes"] = _read_int(path / "memory.peak")
            events = _read_kv(path / "memory.events")
            stats["oom_kills"] = events.get("oom_kill", 0)
            stats["pids_limit_hits"] = _read_kv(path / "pids.events").get("max", 0)
        else:
            memory, pids = self.paths
            stats["memory_peak_bytes"] = _read_int(memory / "memory.max_usage_in_bytes")
            stats["oom_kills"] = _read_kv(memory / "memory.oom_control").get("oom_kill", 0)
            stats["pids_limit_hits"] = _read_kv(pids / "pids.events").get("max", 0)
        return stats

    def remove(self) -> None:
        for path in reversed(self.paths):
            for _ in range(50):
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # still busy: processes exiting
                    time.sleep(0.05)
        self.paths = []


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _read_kv(path: Path) -> dict[str, int]:
    values: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            with contextlib.suppress(ValueError):
                values[key] = int(value)
    return values


def owner_gone(name: str, mtime: float, cutoff: float) -> bool:
    """Whether what a worker named ``<what>.<pid>.<random>`` left is an orphan: its worker
    (on this host) is gone; a name without a pid is judged by age."""
    parts = name.split(".")
    if len(parts) >= 3 and parts[-2].isdigit():
        try:
            os.kill(int(parts[-2]), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
    return mtime < cutoff


def reap_stale(older_than_s: float) -> int:
    """Kill and remove phase groups whose worker is gone (a worker SIGKILLed while a
    sandbox was starting, before bubblewrap tied it to its parent)."""
    support = detect()
    removed = 0
    cutoff = time.time() - older_than_s
    for base in support.bases:
        for path in base.iterdir() if base.is_dir() else ():
            if not path.is_dir() or not owner_gone(path.name, path.stat().st_mtime, cutoff):
                continue
            stale = PhaseGroup(support, 0, 0, [path])
            stale.kill_all(wait_s=2)
            stale.remove()
            removed += 1
    return removed
