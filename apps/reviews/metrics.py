"""APV state for Prometheus, counted when it scrapes (apps/core/metrics.py)."""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Count
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily

from apps.reviews.models import APV, APVStatus

#: Statuses whose SLA no longer runs: fixed, or a reviewer closed it on purpose.
SLA_STOPPED = (APVStatus.APPLIED, APVStatus.RESOLVED, APVStatus.FALSE_POSITIVE,
               APVStatus.RISK_ACCEPTED)


def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
    return (GaugeMetricFamily("immune_apvs", "APVs by status and severity.",
                              labels=["status", "severity"]),
            GaugeMetricFamily("immune_apvs_sla_breached",
                              "APVs past their SLA due date that are still open, by severity.",
                              labels=["severity"]))


def collect() -> Iterator[GaugeMetricFamily]:
    apvs, breached = _families()
    for row in (APV.objects.order_by().values("status", "severity")
                .annotate(n=Count("pk")).order_by("status", "severity")):
        apvs.add_metric([row["status"], row["severity"]], row["n"])
    for row in (APV.objects.order_by().exclude(status__in=SLA_STOPPED)
                .filter(sla_due_at__lt=timezone.now()).values("severity")
                .annotate(n=Count("pk")).order_by("severity")):
        breached.add_metric([row["severity"]], row["n"])
    yield apvs
    yield breached


DESCRIBE = _families()
