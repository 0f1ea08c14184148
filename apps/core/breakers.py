"""Circuit breakers around what immune calls over the network (issue 12).

A dependency that is down must cost one fast refusal, not a timeout per request: after
``failure_threshold`` consecutive failures a breaker opens and calls are refused at once
(``CircuitBreakerError``) for ``recovery_timeout`` seconds; then the next call is a trial,
whose success closes the breaker again.

Built on ``circuitbreaker`` (fabfuel/circuitbreaker) rather than pybreaker: pybreaker holds
one process-wide lock for the whole duration of every guarded call, which would serialise
every cache read of a web process behind one Redis round trip (and behind a 3 s timeout
while Redis hangs). ``circuitbreaker`` keeps no lock; its counters may race by a count,
which only moves the moment a breaker opens by one call.

Each breaker is visible in ``/health/components`` (``circuit.<name>``) and in ``/metrics``
(``immune_circuit_breaker_state``, ``..._failures_total``, ``..._rejected_total``). State is
per process: each web or worker process learns on its own that a dependency is down.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import structlog
from circuitbreaker import STATE_CLOSED, STATE_HALF_OPEN, STATE_OPEN, CircuitBreaker
from circuitbreaker import CircuitBreakerError as CircuitBreakerError  # re-exported
from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily

from apps.core.metrics import add_scrape_time_collector

log = structlog.get_logger(__name__)
T = TypeVar("T")

_STATE_VALUE = {STATE_CLOSED: 0, STATE_HALF_OPEN: 1, STATE_OPEN: 2}

FAILURES = Counter("immune_circuit_breaker_failures_total",
                   "Calls through a circuit breaker that failed in a way that counts.",
                   ["breaker"])
REJECTED = Counter("immune_circuit_breaker_rejected_total",
                   "Calls a circuit breaker refused at once because it was open.", ["breaker"])

#: Every breaker by name, for health and metrics.
BREAKERS: dict[str, Breaker] = {}


class Breaker(CircuitBreaker):
    """A named breaker that counts, logs each state change and refuses while open.

    ``is_failure(exc)`` says which exceptions mean "the dependency is down" (a timeout, a
    refused connection, an HTTP 5xx); anything else passes through without counting, so
    a 404 or a merge conflict never opens a breaker.
    """

    def __init__(self, name: str, *, failure_threshold: int, recovery_timeout: float,
                 is_failure: Callable[[BaseException], bool]) -> None:
        super().__init__(failure_threshold=failure_threshold, recovery_timeout=recovery_timeout,
                         expected_exception=lambda _type, exc: is_failure(exc), name=name)
        BREAKERS[name] = self
        from apps.core.health import register_check

        register_check(f"circuit.{name}", self.health)

    def health(self) -> str:
        """The health check of this breaker: degraded while it is not closed."""
        from apps.core.health import Degraded

        state = self.state
        if state == STATE_OPEN:
            raise Degraded(f"open after {self.failure_count} failures; "
                           f"next trial in {max(self.open_remaining, 0)} s")
        if state == STATE_HALF_OPEN:
            raise Degraded("half-open: the next call is a trial")
        return "closed"

    def guard(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``func(*args, **kwargs)``, or ``CircuitBreakerError`` at once while open."""
        before = self.state
        if before == STATE_OPEN:
            REJECTED.labels(breaker=self.name).inc()
            raise CircuitBreakerError(self)
        return self._observed(before, func, *args, **kwargs)

    def attempt(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call even while open (a health probe): success closes it, failure counts."""
        return self._observed(self.state, func, *args, **kwargs)

    def _observed(self, before: str, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return self.call(func, *args, **kwargs)
        except Exception as exc:
            if self.is_failure(type(exc), exc):
                FAILURES.labels(breaker=self.name).inc()
            raise
        finally:
            after = self.state
            if after != before and (after == STATE_OPEN or before != STATE_CLOSED):
                self._announce(before, after)

    def _announce(self, before: str, after: str) -> None:
        if after == STATE_OPEN:
            log.warning("breaker.opened", breaker=self.name, failures=self.failure_count,
                        retry_in_s=self.open_remaining,
                        error=type(self.last_failure).__name__ if self.last_failure else "")
        elif after == STATE_CLOSED:
            log.info("breaker.closed", breaker=self.name, was=before)


def breaker_states() -> dict[str, str]:
    return {name: breaker.state for name, breaker in BREAKERS.items()}


class _StateCollector:
    """``immune_circuit_breaker_state{breaker}``: 0 closed, 1 half-open, 2 open, read at
    scrape time (a breaker turns half-open by the clock, with no call to record it)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("immune_circuit_breaker_state",
                                   "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
                                   labels=["breaker"])
        for name, breaker in sorted(BREAKERS.items()):
            family.add_metric([name], _STATE_VALUE[breaker.state])
        yield family


add_scrape_time_collector(_StateCollector())
