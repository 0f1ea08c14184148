"""Real checks of the components immune depends on.

Each check does the real thing (a query, a cache set/get, a broker connection, a
channel-layer send/receive), times it, and reports ``healthy``, ``degraded``
(worked, but slower than ``HEALTH_DEGRADED_MS``) or ``unhealthy`` (failed).
Error details are logged, not returned: the endpoints are unauthenticated.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass

import structlog
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.db import DEFAULT_DB_ALIAS, connections

HEALTHY, DEGRADED, UNHEALTHY = "healthy", "degraded", "unhealthy"
CHECK_TIMEOUT_S = 3.0

log = structlog.get_logger(__name__)


class Degraded(Exception):  # noqa: N818 (a state, not an error)
    """A check worked but the component runs below par; the message says how."""


@dataclass
class ComponentHealth:
    name: str
    status: str
    latency_ms: float
    required: bool
    backend: str
    error: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def _check_database() -> str:
    conn = connections[DEFAULT_DB_ALIAS]
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT 1")
            if cursor.fetchone()[0] != 1:
                raise RuntimeError("SELECT 1 did not return 1")
    except Exception:
        conn.close()  # the next request reconnects instead of reusing a broken connection
        raise
    return conn.vendor


def _check_cache() -> str:
    key, value = f"health:{uuid.uuid4().hex}", uuid.uuid4().hex
    backend = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]
    if hasattr(cache, "probe"):  # the resilient Redis cache hides failures from get/set
        cache.probe(key, value)
        return backend
    cache.set(key, value, timeout=10)
    try:
        if cache.get(key) != value:
            raise RuntimeError("value read back differs from the value written")
    finally:
        cache.delete(key)
    return backend


def _check_broker() -> str:
    """The same check the writes that queue a task make (``queue.ping_broker``)."""
    from apps.core.queue import ping_broker

    if settings.CELERY_BROKER_URL.startswith("memory://"):
        return "in-process (no broker configured; tasks run eagerly)"
    return ping_broker()


async def _channel_round_trip() -> None:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")
    channel = await layer.new_channel("health.")
    token = uuid.uuid4().hex
    await layer.send(channel, {"type": "health.check", "token": token})
    message = await asyncio.wait_for(layer.receive(channel), timeout=CHECK_TIMEOUT_S)
    if message.get("token") != token:
        raise RuntimeError("received a different message than was sent")


def _check_channel_layer() -> str:
    async_to_sync(_channel_round_trip)()
    return settings.CHANNEL_LAYERS["default"]["BACKEND"].rsplit(".", 1)[-1]


CHECKS: dict[str, Callable[[], str]] = {
    "database": _check_database,
    "cache": _check_cache,
    "broker": _check_broker,
    "channel_layer": _check_channel_layer,
}


def register_check(name: str, check: Callable[[], str]) -> None:
    """Apps add their components here (from ``AppConfig.ready``): core imports no app."""
    CHECKS[name] = check


def run_check(name: str) -> ComponentHealth:
    required = name in settings.HEALTH_REQUIRED_COMPONENTS
    started = time.perf_counter()
    try:
        backend = CHECKS[name]()
    except Degraded as exc:
        latency = round((time.perf_counter() - started) * 1000, 2)
        return ComponentHealth(name, DEGRADED, latency, required, str(exc))
    except Exception as exc:
        latency = round((time.perf_counter() - started) * 1000, 2)
        log.warning("health.check_failed", component=name, error=repr(exc), latency_ms=latency)
        return ComponentHealth(name, UNHEALTHY, latency, required, "", type(exc).__name__)
    latency = round((time.perf_counter() - started) * 1000, 2)
    status = DEGRADED if latency > settings.HEALTH_DEGRADED_MS else HEALTHY
    return ComponentHealth(name, status, latency, required, backend)


def run_checks() -> tuple[str, list[ComponentHealth]]:
    """All components and the overall status (unhealthy when a required one is down)."""
    components = [run_check(name) for name in list(CHECKS)]
    if any(c.status == UNHEALTHY and c.required for c in components):
        overall = UNHEALTHY
    elif any(c.status != HEALTHY for c in components):
        overall = DEGRADED
    else:
        overall = HEALTHY
    return overall, components
