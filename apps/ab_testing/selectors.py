"""Reads of A/B testing: the accuracy report (confusion matrix, metrics, 95 % interval),
its history per model version, and the disagreements worth studying."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.db.models import CharField, QuerySet, Value

from apps.ab_testing.models import ABTestResult, Experiment
from apps.ab_testing.services import ACCURACY_GENERATION_KEY
from apps.ml.stats import Z_95, wilson_interval  # noqa: F401 (one copy, re-exported)


def ab_result_list(*, model_version: int | None = None, since: datetime | None = None,
                   until: datetime | None = None) -> QuerySet[ABTestResult]:
    qs = ABTestResult.objects.select_related("model_version", "wargame_run",
                                             "prediction__patch")
    if model_version is not None:
        qs = qs.filter(model_version__version=model_version)
    if since is not None:
        qs = qs.filter(recorded_at__gte=since)
    if until is not None:
        qs = qs.filter(recorded_at__lt=until)
    return qs


def confusion(pairs) -> dict:
    """Counts and metrics from (predicted_effective, actual_effective) pairs."""
    tp = fp = fn = tn = 0
    for predicted, actual in pairs:
        if predicted and actual:
            tp += 1
        elif predicted:
            fp += 1
        elif actual:
            fn += 1
        else:
            tn += 1
    n = tp + fp + fn + tn
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = (2 * precision * recall / (precision + recall)
          if precision is not None and recall is not None and precision + recall else None)
    interval = wilson_interval(tp + tn, n)
    return {
        "confusion_matrix": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
        "sample_size": n,
        "accuracy": (tp + tn) / n if n else None,
        "accuracy_ci95": list(interval) if interval else None,
        "precision": precision, "recall": recall, "f1": f1,
    }


def accuracy_report(*, model_version: int | None = None, since: datetime | None = None,
                    until: datetime | None = None) -> dict:
    """The report of ``GET /api/v1/wargaming/ml/accuracy``; cached 5 minutes, and a new
    result makes every cached report stale at once (the key carries a generation)."""
    generation = cache.get(ACCURACY_GENERATION_KEY, 0)
    key = (f"ab:accuracy:{generation}:{model_version}:"
           f"{since.isoformat() if since else ''}:{until.isoformat() if until else ''}")
    report = cache.get(key)
    if report is not None:
        return {**report, "cached": True}
    qs = ab_result_list(model_version=model_version, since=since, until=until)
    counted = qs.filter(correct__isnull=False)
    report = {
        "positive": "patch_effective",
        "filters": {"model_version": model_version,
                    "since": since.isoformat() if since else None,
                    "until": until.isoformat() if until else None},
        **confusion(counted.values_list("predicted_effective", "actual_effective")),
        "not_counted": qs.filter(correct__isnull=True).count(),
        "experiment": experiment_status(),
    }
    cache.set(key, report, settings.AB_ACCURACY_CACHE_S)
    return {**report, "cached": False}


def accuracy_by_package(*, model_version: int | None = None, since: datetime | None = None,
                        until: datetime | None = None) -> list[dict]:
    """The report per package (the patch's package): its confusion matrix, accuracy with
    the 95 % Wilson interval, and how many of its pairs were predicted by a model that had
    never seen the package (docs/ml.md: the case routing sends to a wargame unless the
    model's leave-one-package-out accuracy is high enough)."""
    from collections import defaultdict

    pairs: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
    unseen: dict[str, int] = defaultdict(int)
    rows = (ab_result_list(model_version=model_version, since=since, until=until)
            .filter(correct__isnull=False)
            .values_list("prediction__patch__package", "predicted_effective",
                         "actual_effective", "model_version__training_packages"))
    for package, predicted, actual, trained_on in rows:
        package = package or "unknown"
        pairs[package].append((predicted, actual))
        if package not in (trained_on or []):
            unseen[package] += 1
    return [{"package": package, **confusion(found), "unseen_by_model": unseen[package]}
            for package, found in sorted(pairs.items())]


def accuracy_by_version_and_day() -> list[dict]:
    """Accuracy per model version per day (the admin's chart), from the stored pairs."""
    from collections import defaultdict

    buckets: dict[tuple[int, str], list[tuple[bool, bool]]] = defaultdict(list)
    for version, day, predicted, actual in (
            ABTestResult.objects.filter(correct__isnull=False)
            .values_list("model_version__version", "recorded_at", "predicted_effective",
                         "actual_effective").order_by("recorded_at")):
        buckets[(version, day.date().isoformat())].append((predicted, actual))
    return [{"model_version": version, "day": day, **confusion(pairs)}
            for (version, day), pairs in sorted(buckets.items())]


def with_reviewer_decision(qs: QuerySet[ABTestResult]) -> QuerySet[ABTestResult]:
    """Each pair with the latest reviewer decision on its patch revision (or None): what a
    reviewer made of an ML-routed patch, to set beside what the wargame said. Decisions
    sits above A/B testing, so it supplies the annotation (``hooks.reviewer_decisions``)."""
    from apps.ab_testing.hooks import reviewer_decisions

    if reviewer_decisions.subscribed:
        return reviewer_decisions.first(qs=qs)
    return qs.annotate(reviewer_decision=Value(None, output_field=CharField()),
                       reviewer=Value(None, output_field=CharField()))


def disagreements() -> QuerySet[ABTestResult]:
    """Pairs where the wargame contradicted the model, with the reviewer's decision."""
    return with_reviewer_decision(ab_result_list().filter(correct=False))


def experiment_status() -> dict:
    from apps.ml.models import ModelVersion

    current = Experiment.objects.filter(enabled=True).first()
    model = ModelVersion.objects.filter(is_active=True).only("version", "algorithm").first()
    return {
        "enabled": current is not None,
        "experiment": None if current is None else {
            "id": current.pk, "rate": current.rate, "enabled_at": current.enabled_at,
            "enabled_by": current.enabled_by_name, "via": current.via,
            "results": current.results.count()},
        "active_model": None if model is None else {"version": model.version,
                                                    "algorithm": model.algorithm},
        "routing": "ml-first" if model is not None else
        "every patch is wargamed (no active model)",
    }
