"""Wargame outcomes for Prometheus, counted when it scrapes (apps/core/metrics.py)."""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Count
from prometheus_client.core import CounterMetricFamily, Metric

from apps.core.metrics import bucket_aggregates, bucket_row, histogram_family
from apps.wargaming.models import RunState, WargameRun

DURATION_BUCKETS = (1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200)


def _runs() -> CounterMetricFamily:
    return CounterMetricFamily("immune_wargame_runs", "Finished wargame runs by kind and verdict.",
                               labels=["kind", "verdict"])


def _duration(rows=()) -> Metric:
    return histogram_family("immune_wargame_duration_seconds",
                            "Wall time of finished wargame runs, by kind.", DURATION_BUCKETS,
                            rows, labels=["kind"])


def collect() -> Iterator[Metric]:
    runs = _runs()
    finished = WargameRun.objects.order_by().filter(state=RunState.FINISHED)
    for row in (finished.values("kind", "verdict").annotate(n=Count("pk"))
                .order_by("kind", "verdict")):
        runs.add_metric([row["kind"], row["verdict"] or "none"], row["n"])
    yield runs
    rows = (finished.filter(duration_s__isnull=False).values("kind")
            .annotate(**bucket_aggregates("duration_s", DURATION_BUCKETS)).order_by("kind"))
    yield _duration([bucket_row((row["kind"],), row, DURATION_BUCKETS) for row in rows])


DESCRIBE = (_runs(), _duration())
