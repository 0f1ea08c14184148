"""Domain metrics read from the database when Prometheus scrapes (issue 15).

State such as "APVs open by severity" is true in the database, not in any one process:
counting it at scrape time gives the same answer from every web process, survives
restarts, and needs no bookkeeping in the code paths that change it. Each app registers a
collector for its own rows from ``AppConfig.ready`` (core imports no app); this module
owns the registration, the exposition and the helpers.

Process-local metrics (task runs in workers, HTTP latency in web processes) stay ordinary
prometheus_client metrics. With several processes per pod set ``PROMETHEUS_MULTIPROC_DIR``
(a fresh, empty directory shared by the processes of one pod): the exposition then merges
every process's files. Workers serve ``/metrics`` on ``WORKER_METRICS_PORT``
(``apps/core/worker_metrics.py``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

import structlog
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

log = structlog.get_logger(__name__)

#: Collectors by name; each yields metric families built from database queries.
DOMAIN_COLLECTORS: dict[str, tuple[Callable[[], Iterable[Metric]], Sequence[Metric]]] = {}

COLLECT_ERRORS = Counter("immune_metrics_collect_errors_total",
                         "Scrapes whose domain collector failed (e.g. the database was down).",
                         ["collector"])
COLLECT_SECONDS = Histogram("immune_metrics_collect_seconds",
                            "Time spent reading domain metrics from the database per scrape.",
                            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))


def register_domain_collector(name: str, collect: Callable[[], Iterable[Metric]],
                              describe: Sequence[Metric]) -> None:
    """Add ``collect`` (run at scrape time) under ``name``; ``describe`` lists its families
    without samples, so registering never touches the database."""
    DOMAIN_COLLECTORS[name] = (collect, describe)


class DomainCollector(Collector):
    def describe(self) -> Iterator[Metric]:
        for _collect, families in DOMAIN_COLLECTORS.values():
            yield from families

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        for name, (collect, _families) in sorted(DOMAIN_COLLECTORS.items()):
            try:
                # Materialised first: a failure half-way must not emit half a family.
                yield from list(collect())
            except Exception as exc:  # noqa: BLE001 (a scrape reports, never fails)
                COLLECT_ERRORS.labels(collector=name).inc()
                log.warning("metrics.collect_failed", collector=name, error=type(exc).__name__)
        COLLECT_SECONDS.observe(time.perf_counter() - started)


DOMAIN = DomainCollector()
#: Collectors read at scrape time in this process (the breaker states register here too).
SCRAPE_TIME_COLLECTORS: list[Collector] = [DOMAIN]


def multiprocess_dir() -> str:
    # Read from the environment, not settings: prometheus_client itself decides there,
    # when it is imported, whether metric values live in files.
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")


def add_scrape_time_collector(collector: Collector) -> None:
    SCRAPE_TIME_COLLECTORS.append(collector)
    if not multiprocess_dir():
        REGISTRY.register(collector)


if not multiprocess_dir():
    REGISTRY.register(DOMAIN)


def exposition_registry() -> CollectorRegistry:
    """What one scrape returns: every process's metrics merged in multiprocess mode
    (plus this process's scrape-time collectors), else this process's registry."""
    if not multiprocess_dir():
        return REGISTRY
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    for collector in SCRAPE_TIME_COLLECTORS:
        registry.register(collector)
    return registry


def histogram_family(name: str, documentation: str, buckets: Sequence[float],
                     rows: Iterable[tuple[tuple[str, ...], Sequence[int], float, int]],
                     labels: Sequence[str] = ()) -> HistogramMetricFamily:
    """A histogram from per-bucket counts computed in SQL.

    ``rows``: (label values, cumulative counts for ``buckets``, sum, total count).
    """
    family = HistogramMetricFamily(name, documentation, labels=list(labels))
    for values, counts, total_sum, total in rows:
        pairs = [(_bound(b), c) for b, c in zip(buckets, counts, strict=True)]
        pairs.append(("+Inf", total))
        family.add_metric(list(values), pairs, total_sum)
    return family


def _bound(value: float) -> str:
    return str(float(value))


def bucket_aggregates(field: str, buckets: Sequence[float]) -> dict:
    """``Count`` per cumulative bucket, the sum and the count of ``field``, for one query."""
    from django.db.models import Count, Q, Sum

    aggregates = {f"le_{i}": Count("pk", filter=Q(**{f"{field}__lte": bound}))
                  for i, bound in enumerate(buckets)}
    aggregates["total_sum"] = Sum(field)
    aggregates["total"] = Count(field)
    return aggregates


def bucket_row(values: tuple[str, ...], row: dict, buckets: Sequence[float]):
    return (values, [row[f"le_{i}"] for i in range(len(buckets))],
            float(row["total_sum"] or 0.0), row["total"])
