"""Deliveries for Prometheus, counted from the Delivery table when it scrapes
(apps/core/metrics.py): one query per scrape, whatever the table holds."""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Count
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from apps.notifications.models import Delivery, Outcome


def _families() -> tuple[CounterMetricFamily, GaugeMetricFamily]:
    # Only final outcomes in the counter: a pending delivery becomes sent or failed, and a
    # counter must never go down; what waits is the gauge.
    return (CounterMetricFamily("immune_notifications",
                                "Notification deliveries by channel and final outcome "
                                "(sent, failed).", labels=["channel", "outcome"]),
            GaugeMetricFamily("immune_notifications_pending",
                              "Notification deliveries not yet sent, by channel.",
                              labels=["channel"]))


def collect() -> Iterator[Metric]:
    total, pending = _families()
    for row in (Delivery.objects.order_by().values("channel", "outcome")
                .annotate(n=Count("pk")).order_by("channel", "outcome")):
        if row["outcome"] == Outcome.PENDING:
            pending.add_metric([row["channel"]], row["n"])
        else:
            total.add_metric([row["channel"], row["outcome"]], row["n"])
    yield total
    yield pending


DESCRIBE = _families()
