"""The sandbox as a health component (``/health/components`` ``sandbox``).

A worker publishes what its sandbox is when it starts (the web process, which answers the
health check, may run where wargames never do); the check reads that, or checks this host
when tasks run in-process or no worker has reported yet.
"""

from __future__ import annotations

import contextlib
import socket
import time

from django.conf import settings

from apps.wargaming.sandbox import SandboxUnavailable, status

STATUS_CACHE_KEY = "wargaming:sandbox-status"


def publish_status() -> dict:
    """A worker says what its sandbox is (the web process may run on another host)."""
    from django.core.cache import cache

    st = status()
    report = {"available": st.available, "confined": st.confined, "detail": st.detail,
              "cgroup": st.cgroup, "host": socket.gethostname(), "at": time.time()}
    with contextlib.suppress(Exception):  # health reporting never breaks a wargame
        cache.set(STATUS_CACHE_KEY, report, timeout=None)
    return report


def publish_status_on_start(**_kwargs) -> None:
    publish_status()


def health_check() -> str:
    """``/health/components`` ``sandbox``: what workers report (this host's own check when
    tasks run in-process or no worker has reported yet)."""
    from django.core.cache import cache

    from apps.core.health import Degraded

    report = None
    if not settings.CELERY_TASK_ALWAYS_EAGER:
        report = cache.get(STATUS_CACHE_KEY)
    if report is None:
        report = publish_status()
        where = "this host"
    else:
        where = f"worker {report['host']}"
    text = f"{where}: {report['detail']}"
    if not report["available"]:
        raise SandboxUnavailable(text)
    if not report["confined"] or not report["cgroup"]:
        raise Degraded(text)
    return text
