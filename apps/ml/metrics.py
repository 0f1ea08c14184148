"""Prediction latency for Prometheus, read when it scrapes (apps/core/metrics.py)."""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import ExpressionWrapper, F, FloatField
from prometheus_client.core import Metric

from apps.core.metrics import bucket_aggregates, bucket_row, histogram_family
from apps.ml.models import Prediction

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


def _latency(rows=()) -> Metric:
    return histogram_family("immune_prediction_seconds",
                            "Time the active model took to predict one patch (cache hits "
                            "included).", BUCKETS, rows)


def collect() -> Iterator[Metric]:
    seconds = ExpressionWrapper(F("latency_ms") / 1000.0, output_field=FloatField())
    row = (Prediction.objects.order_by().filter(latency_ms__isnull=False)
           .annotate(seconds=seconds).aggregate(**bucket_aggregates("seconds", BUCKETS)))
    yield _latency([bucket_row((), row, BUCKETS)])


DESCRIBE = (_latency(),)
