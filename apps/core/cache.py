"""A Redis cache that answers misses, not errors, while Redis is down (issue 12).

Everything immune keeps in its cache can be recomputed or done without: throttle
histories, login-attempt counts, ML prediction and A/B report caches, the sandbox status.
So while Redis is down (or the ``redis`` breaker is open) a read is a miss, a write is
dropped and ``incr`` raises ``ValueError`` as for a missing key; the API keeps serving.
What does need Redis (queueing a task) checks the broker itself: ``apps/core/queue.py``.

Failures are logged when they count towards the breaker (at most ``failure_threshold``
lines, then one per trial); refused calls while it is open are only counted in metrics.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import structlog
from django.conf import settings
from django_prometheus.cache.backends.redis import RedisCache
from django_redis.exceptions import ConnectionInterrupted
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from apps.core.breakers import Breaker, CircuitBreakerError

log = structlog.get_logger(__name__)

REDIS_ERRORS = (ConnectionInterrupted, RedisConnectionError, RedisTimeoutError, OSError)

#: The breaker of the Redis that holds the cache and the channel layer (one REDIS_URL).
REDIS_BREAKER = Breaker(
    "redis",
    failure_threshold=settings.BREAKER_REDIS_FAILURES,
    recovery_timeout=settings.BREAKER_REDIS_RESET_S,
    is_failure=lambda exc: isinstance(exc, REDIS_ERRORS),
)


def redis_guarded(fallback: Callable[..., Any]) -> Callable:
    """Run a cache method through the breaker; on an outage return ``fallback(...)``."""

    def decorate(method: Callable) -> Callable:
        @functools.wraps(method)
        def wrapper(self, *args: Any, **kwargs: Any) -> Any:
            try:
                return REDIS_BREAKER.guard(method, self, *args, **kwargs)
            except CircuitBreakerError:
                return fallback(*args, **kwargs)
            except REDIS_ERRORS as exc:
                log.warning("cache.unavailable", operation=method.__name__,
                            error=type(exc).__name__)
                return fallback(*args, **kwargs)

        return wrapper

    return decorate


def _default(key: Any, default: Any = None, *args: Any, **kwargs: Any) -> Any:
    return kwargs.get("default", default)


def _none(*args: Any, **kwargs: Any) -> None:
    return None


def _false(*args: Any, **kwargs: Any) -> bool:
    return False


def _empty(*args: Any, **kwargs: Any) -> dict:
    return {}


def _missing(key: Any, *args: Any, **kwargs: Any) -> int:
    raise ValueError(f"Key {key!r} not found (the cache is unavailable)")


class ResilientRedisCache(RedisCache):
    """django-redis (with django-prometheus's counters) behind the ``redis`` breaker."""

    get = redis_guarded(_default)(RedisCache.get)
    get_many = redis_guarded(_empty)(RedisCache.get_many)
    set = redis_guarded(_none)(RedisCache.set)
    set_many = redis_guarded(_none)(RedisCache.set_many)
    add = redis_guarded(_false)(RedisCache.add)
    delete = redis_guarded(_false)(RedisCache.delete)
    delete_many = redis_guarded(_none)(RedisCache.delete_many)
    has_key = redis_guarded(_false)(RedisCache.has_key)
    touch = redis_guarded(_false)(RedisCache.touch)
    incr = redis_guarded(_missing)(RedisCache.incr)
    decr = redis_guarded(_missing)(RedisCache.decr)

    @property
    def available(self) -> bool:
        """False while the breaker is open: callers may skip work that needs the cache."""
        return not REDIS_BREAKER.opened

    def probe(self, key: str, value: str) -> None:
        """Write, read back and delete ``key`` for real (the health check): always tried,
        even while the breaker is open, so that a Redis that came back closes it."""

        def round_trip() -> None:
            RedisCache.set(self, key, value, timeout=10)
            try:
                if RedisCache.get(self, key) != value:
                    raise RuntimeError("value read back differs from the value written")
            finally:
                RedisCache.delete(self, key)

        REDIS_BREAKER.attempt(round_trip)
