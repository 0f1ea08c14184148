#!/usr/bin/env python3
"""Health check of one immune container, for Docker's HEALTHCHECK, compose and Kubernetes.

    python /app/docker/healthcheck.py [web|worker|beat|auto] [--max-age SECONDS]

``auto`` (the default) reads what the container runs from PID 1's arguments (tini, then
docker/entrypoint.sh and its first argument, or the command itself):

- ``web``: ``GET http://127.0.0.1:8000/health/live`` answers 200. Nothing external is
  checked: readiness (``/health/ready``) is the orchestrator's business, not a restart's.
  The request names the first entry of ``ALLOWED_HOSTS`` as its host, so Django's host
  check passes.
- ``worker``: ``celery -A immune inspect ping -d celery@$HOSTNAME`` gets an answer: the
  worker's main process consumes from the broker (it answers while its pool runs tasks).
- ``beat``: the schedule file (``BEAT_SCHEDULE_FILE``, whatever suffix the dbm module added)
  was written within ``--max-age`` seconds (default 600; beat saves it every 3 minutes).
- anything else (``migrate``, a shell): healthy.

Exit 0 healthy, 1 unhealthy; one line on stdout says why. Standard library only, so the
check costs no Django start-up (except the worker's ping, which needs Celery).
"""

from __future__ import annotations

import glob
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

WEB_URL = os.environ.get("HEALTHCHECK_WEB_URL", "http://127.0.0.1:8000/health/live")
DEFAULT_SCHEDULE = "/app/beat/celerybeat-schedule"


def detect(cmdline: list[str]) -> str:
    """The process kind from PID 1's arguments."""
    words = [os.path.basename(w) for w in cmdline]
    if "uvicorn" in words or "daphne" in words:
        return "web"
    if "celery" in words:
        for kind in ("worker", "beat"):
            if kind in words:
                return kind
    if "entrypoint.sh" in words:
        following = words[words.index("entrypoint.sh") + 1:]
        first = following[0] if following else "web"
        if first in ("web", "worker", "beat"):
            return first
    return "other"


def pid1_cmdline() -> list[str]:
    try:
        with open("/proc/1/cmdline", "rb") as f:
            return [w.decode(errors="replace") for w in f.read().split(b"\0") if w]
    except OSError:
        return []


def probe_host(allowed_hosts: str) -> str:
    """A Host header Django accepts: the first entry of ALLOWED_HOSTS ("*" or none: localhost)."""
    for entry in (h.strip() for h in allowed_hosts.split(",")):
        if entry and entry != "*":
            return entry.lstrip(".")
    return "localhost"


def check_web(timeout: float = 10.0) -> tuple[bool, str]:
    host = probe_host(os.environ.get("ALLOWED_HOSTS", ""))
    request = urllib.request.Request(WEB_URL, headers={"Host": host})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status == 200, f"web: /health/live {response.status}"
    except urllib.error.HTTPError as exc:
        return False, f"web: /health/live {exc.code}"
    except OSError as exc:
        return False, f"web: /health/live unreachable ({exc.__class__.__name__})"


def check_worker(timeout: float = 10.0) -> tuple[bool, str]:
    node = f"celery@{os.environ.get('HOSTNAME') or socket.gethostname()}"
    try:
        done = subprocess.run(
            ["celery", "-A", "immune", "inspect", "ping", "--destination", node,
             "--timeout", str(int(timeout))],
            capture_output=True, text=True, timeout=timeout + 30,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"worker: ping failed ({exc.__class__.__name__})"
    ok = done.returncode == 0 and "pong" in done.stdout
    return ok, f"worker: {node} {'answered' if ok else 'did not answer'}"


def check_beat(max_age: float) -> tuple[bool, str]:
    schedule = os.environ.get("BEAT_SCHEDULE_FILE") or DEFAULT_SCHEDULE
    files = glob.glob(glob.escape(schedule) + "*")
    if not files:
        return False, f"beat: no schedule file at {schedule}"
    age = time.time() - max(os.path.getmtime(f) for f in files)
    return age <= max_age, f"beat: schedule written {age:.0f} s ago (max {max_age:.0f})"


def main(argv: list[str]) -> int:
    kind = "auto"
    max_age = 600.0
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--max-age" and args:
            max_age = float(args.pop(0))
        elif arg in ("web", "worker", "beat", "auto"):
            kind = arg
        else:
            print(f"usage: healthcheck.py [web|worker|beat|auto] [--max-age S] (not {arg!r})")
            return 2
    if kind == "auto":
        kind = detect(pid1_cmdline())
    if kind == "web":
        ok, why = check_web()
    elif kind == "worker":
        ok, why = check_worker()
    elif kind == "beat":
        ok, why = check_beat(max_age)
    else:
        ok, why = True, "no check for this process"
    print(why)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
