"""API rate limits that fail open, and say so, while the cache is down (issue 12).

DRF's throttles keep their history in the cache. With Redis down the resilient cache
(``apps/core/cache.py``) answers every read as a miss, so a throttle would let everything
through without a word; these log ``throttle.fail_open`` instead (at most once per
``_LOG_EVERY_S`` per scope and process) so an operator sees that limits are off.
"""

from __future__ import annotations

import time

import structlog
from rest_framework import throttling

log = structlog.get_logger(__name__)

_LOG_EVERY_S = 10.0
_last_logged: dict[str, float] = {}


class _FailOpen:
    scope: str
    cache: object

    def allow_request(self, request, view) -> bool:
        if not getattr(self.cache, "available", True):
            now = time.monotonic()
            if now - _last_logged.get(self.scope, -_LOG_EVERY_S) >= _LOG_EVERY_S:
                _last_logged[self.scope] = now
                log.warning("throttle.fail_open", scope=self.scope,
                            reason="the cache that holds request counts is unavailable")
            return True
        return super().allow_request(request, view)


class UserRateThrottle(_FailOpen, throttling.UserRateThrottle):
    pass


class AnonRateThrottle(_FailOpen, throttling.AnonRateThrottle):
    pass
