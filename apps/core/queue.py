"""Queueing a task when the broker may be down (issue 12).

A write whose point is a task (start a wargame, train a model) must not be stored with
no task behind it, and must not answer 500 after its row committed. So:

- ``require_broker()`` checks the broker for real before the write (a Redis ``PING`` over
  a pooled connection, well under a millisecond on loopback; for other brokers a kombu
  connection) behind the ``broker`` circuit breaker, and raises ``DependencyUnavailable``:
  the API answers 503 with Retry-After and nothing is written.
- ``enqueue_on_commit(task, *args)`` publishes after commit and, should the broker fail
  in between, logs ``task.enqueue_failed`` instead of failing a request that already
  committed; the row stays ``queued`` and the wargame reaper enqueues it again
  (``WARGAME_REQUEUE_AFTER_S``).
"""

from __future__ import annotations

import functools
from typing import Any

import structlog
from django.conf import settings
from django.db import transaction
from kombu.exceptions import OperationalError as KombuOperationalError
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from apps.core.breakers import Breaker, CircuitBreakerError
from apps.core.unavailable import DependencyUnavailable

log = structlog.get_logger(__name__)

BROKER_ERRORS = (RedisConnectionError, RedisTimeoutError, KombuOperationalError, OSError)

BROKER_BREAKER = Breaker(
    "broker",
    failure_threshold=settings.BREAKER_REDIS_FAILURES,
    recovery_timeout=settings.BREAKER_REDIS_RESET_S,
    is_failure=lambda exc: isinstance(exc, BROKER_ERRORS),
)


def tasks_run_in_process() -> bool:
    """Tasks run where they are called (the embedded profile: no broker), not on a worker."""
    from immune.celery import app

    return bool(app.conf.task_always_eager)


@functools.cache
def _redis_client(url: str) -> Redis:
    return Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)


def ping_broker() -> str:
    """Reach the broker now (raises when it cannot); its transport's name. The check behind
    ``require_broker`` and the health component ``broker``."""
    url = settings.CELERY_BROKER_URL
    if url.startswith(("redis://", "rediss://", "unix://")):
        _redis_client(url).ping()
        return "redis"
    from immune.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=2)
        return conn.transport.driver_type


def require_broker() -> None:
    """Raise ``DependencyUnavailable`` unless a task published now would reach the broker."""
    if tasks_run_in_process():
        return
    try:
        BROKER_BREAKER.guard(ping_broker)
    except CircuitBreakerError:
        raise DependencyUnavailable("broker") from None
    except BROKER_ERRORS as exc:
        log.warning("broker.unavailable", error=type(exc).__name__)
        raise DependencyUnavailable("broker") from None


def enqueue(task: Any, *args: Any) -> bool:
    """``task.delay(*args)``; False (logged) if the broker refused it."""
    try:
        task.delay(*args)
    except BROKER_ERRORS as exc:
        log.error("task.enqueue_failed", task=task.name, args=list(args),
                  error=type(exc).__name__)
        return False
    return True


def enqueue_on_commit(task: Any, *args: Any) -> None:
    """Publish ``task(*args)`` once the current transaction commits."""
    transaction.on_commit(lambda: enqueue(task, *args))
