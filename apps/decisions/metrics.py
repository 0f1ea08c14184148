"""Reviewer decisions for Prometheus, counted when it scrapes (apps/core/metrics.py)."""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Count
from prometheus_client.core import CounterMetricFamily, Metric

from apps.core.metrics import bucket_aggregates, bucket_row, histogram_family
from apps.decisions.models import Decision

#: Seconds from an APV entering pending_review to its decision: minutes to weeks.
WAIT_BUCKETS = (60, 300, 900, 3600, 4 * 3600, 86400, 3 * 86400, 7 * 86400, 30 * 86400)


def _decisions() -> CounterMetricFamily:
    return CounterMetricFamily("immune_decisions", "Reviewer decisions by decision and channel "
                               "(api, admin or command).", labels=["decision", "channel"])


def _wait(rows=()) -> Metric:
    return histogram_family("immune_decision_wait_seconds",
                            "From an APV entering pending review to the reviewer's decision.",
                            WAIT_BUCKETS, rows)


def collect() -> Iterator[Metric]:
    decisions = _decisions()
    for row in (Decision.objects.order_by().values("decision", "audit__via")
                .annotate(n=Count("pk")).order_by("decision", "audit__via")):
        decisions.add_metric([row["decision"], row["audit__via"] or "unknown"], row["n"])
    yield decisions
    row = (Decision.objects.order_by().filter(review_seconds__isnull=False)
           .aggregate(**bucket_aggregates("review_seconds", WAIT_BUCKETS)))
    yield _wait([bucket_row((), row, WAIT_BUCKETS)])


DESCRIBE = (_decisions(), _wait())
