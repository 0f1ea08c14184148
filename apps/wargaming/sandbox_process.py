"""A started sandbox process: its output read through pipes (bounded), its end enforced.

``Sandbox.start`` (sandbox.py) returns a :class:`Running`; ``finish`` waits up to the time
limit, kills the sandbox and whatever is left in its cgroup, and returns the result.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field

OUTPUT_LIMIT = 64_000  # bytes of stdout and of stderr kept on a phase (head and tail)


@dataclass
class SandboxResult:
    exit_code: int | None
    stdout: str
    stderr: str
    duration_s: float
    timed_out: bool
    network_isolated: bool
    as_user: str
    applied: dict = field(default_factory=dict)


class _Capture:
    """The first and last ``limit // 2`` bytes of a stream (the last line is the evidence);
    the rest is read and dropped, so a flood costs neither memory nor disk."""

    def __init__(self, stream, limit: int = OUTPUT_LIMIT):
        self.head, self.tail, self.dropped = bytearray(), bytearray(), 0
        self._half = limit // 2
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        with contextlib.suppress(OSError, ValueError):
            for chunk in iter(lambda: stream.read1(65536), b""):
                room = self._half - len(self.head)
                if room > 0:
                    self.head += chunk[:room]
                    chunk = chunk[room:]
                self.tail += chunk
                if len(self.tail) > self._half:
                    self.dropped += len(self.tail) - self._half
                    del self.tail[:len(self.tail) - self._half]

    def text(self, wait_s: float = 5.0) -> str:
        self._thread.join(wait_s)
        middle = f"\n… ({self.dropped} bytes dropped) …\n".encode() if self.dropped else b""
        return bytes(self.head + middle + self.tail).decode("utf-8", errors="replace")


class Running:
    """A started sandbox process: ``finish()`` waits up to its time, kills the sandbox and
    whatever is left in its cgroup, and returns the result."""

    def __init__(self, process: subprocess.Popen, group, applied: dict, confined: bool):
        self.process, self.group, self.applied, self.confined = process, group, applied, confined
        self.started = time.monotonic()
        self._out, self._err = _Capture(process.stdout), _Capture(process.stderr)

    def alive(self) -> bool:
        return self.process.poll() is None

    def finish(self, timeout_s: float) -> SandboxResult:
        timed_out = False
        self.applied["timeout_s"] = timeout_s
        try:
            try:
                self.process.wait(timeout=max(timeout_s - (time.monotonic() - self.started),
                                              0.01))
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
                if self.group is not None:
                    self.applied["killed_at_end"] = self.group.kill_all()
                    self.applied.update(self.group.stats())
        finally:
            if self.group is not None:
                self.group.remove()
        return SandboxResult(
            exit_code=None if timed_out else self.process.returncode,
            stdout=self._out.text(), stderr=self._err.text(),
            duration_s=time.monotonic() - self.started, timed_out=timed_out,
            network_isolated=self.confined, as_user=self.applied["user"],
            applied=self.applied)
