"""Reviewer decisions for Prometheus, counted when it scrapes (apps/core/metrics.py)."""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Count
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from apps.core.metrics import bucket_aggregates, bucket_row, histogram_family
from apps.decisions.models import Decision, Outcome

#: Seconds from an APV entering pending_review to its decision: minutes to weeks.
WAIT_BUCKETS = (60, 300, 900, 3600, 4 * 3600, 86400, 3 * 86400, 7 * 86400, 30 * 86400)


def _decisions() -> CounterMetricFamily:
    return CounterMetricFamily("immune_decisions", "Reviewer decisions by decision and channel "
                               "(api, admin or command).", labels=["decision", "channel"])


def _outcomes() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "immune_decision_outcomes", "Decisions by outcome: applying (git/the forge still to "
        "act; one staying up means a stuck worker or broker), applied, apply_failed.",
        labels=["outcome"])


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
    outcomes = _outcomes()
    counts = dict(Decision.objects.order_by().values_list("outcome").annotate(n=Count("pk")))
    for outcome in Outcome.values:
        outcomes.add_metric([outcome], counts.get(outcome, 0))
    yield outcomes
    row = (Decision.objects.order_by().filter(review_seconds__isnull=False)
           .aggregate(**bucket_aggregates("review_seconds", WAIT_BUCKETS)))
    yield _wait([bucket_row((), row, WAIT_BUCKETS)])


DESCRIBE = (_decisions(), _outcomes(), _wait())
