"""Writes of A/B testing: enabling and disabling experiments, sampling ML-routed patches
for a shadow wargame, and recording each (prediction, verdict) pair."""

from __future__ import annotations

import random

import structlog
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.ab_testing.errors import ExperimentInvalid
from apps.ab_testing.models import ABTestResult, Experiment
from apps.core.errors import ConflictError

log = structlog.get_logger(__name__)

#: Bumped on every new result; the accuracy report's cache keys include it.
ACCURACY_GENERATION_KEY = "ab:accuracy:generation"

_random = random.SystemRandom()


def _actor_name(user, fallback: str) -> str:
    return user.get_username() if user is not None else fallback


@transaction.atomic
def experiment_enable(*, rate: float, user=None, via: str) -> Experiment:
    """Start sampling at ``rate``. An enabled experiment at another rate is closed and a
    new one opened, so every result belongs to exactly one rate."""
    if not 0 < rate <= 1:
        raise ExperimentInvalid(f"rate must be in (0, 1], got {rate}",
                                details={"rate": "must be > 0 and ≤ 1"})
    current = Experiment.objects.select_for_update().filter(enabled=True).first()
    if current is not None:
        if abs(current.rate - rate) < 1e-9:
            return current
        _close(current, user=user)
    try:
        with transaction.atomic():
            experiment = Experiment.objects.create(
                rate=rate, enabled_at=timezone.now(), enabled_by=user,
                enabled_by_name=_actor_name(user, via), via=via)
    except IntegrityError as exc:
        raise ConflictError("another experiment was enabled meanwhile") from exc
    log.info("ab.enabled", experiment=experiment.pk, rate=rate, by=experiment.enabled_by_name)
    return experiment


@transaction.atomic
def experiment_disable(*, user=None, via: str) -> Experiment | None:
    current = Experiment.objects.select_for_update().filter(enabled=True).first()
    if current is None:
        return None
    _close(current, user=user, fallback=via)
    log.info("ab.disabled", experiment=current.pk, by=current.disabled_by_name)
    return current


def _close(experiment: Experiment, *, user, fallback: str = "system") -> None:
    experiment.enabled = False
    experiment.disabled_at = timezone.now()
    experiment.disabled_by = user
    experiment.disabled_by_name = _actor_name(user, fallback)
    experiment.save(update_fields=["enabled", "disabled_at", "disabled_by",
                                   "disabled_by_name", "updated_at"])


def ab_shadow_maybe(*, prediction):
    """With an experiment enabled, sample this ML-routed prediction with its rate; when
    sampled, queue (or find) the patch revision's wargame as a shadow run. Returns
    (run or None, created)."""
    from apps.ml.services import prediction_link_run
    from apps.wargaming.services import SHADOW_TRIGGER, wargame_start

    experiment = Experiment.objects.filter(enabled=True).first()
    if experiment is None or _random.random() >= experiment.rate:
        return None, False
    run, created = wargame_start(patch=prediction.patch, trigger=SHADOW_TRIGGER)
    prediction_link_run(prediction=prediction, run=run, ab_sampled=True)
    if not created and run.state == "finished":
        ab_result_record(run=run)  # this revision was already wargamed: that is the truth
    return run, created


def ab_result_record(*, run) -> ABTestResult | None:
    """The pair for a finished run that an experiment sampled (idempotent). The wargame's
    answer counts only when its exploit covered at least one of the patch's advisories: the
    comparison is on the covered APVs, the others have no ground truth (verdict scope)."""
    from apps.ml.models import Prediction
    from apps.ml.services import label_of_run

    prediction = (Prediction.objects.filter(wargame_run=run, ab_sampled=True,
                                            ab_result__isnull=True)
                  .select_related("model_version").first())
    if prediction is None or run.state != "finished":
        return None
    experiment = (Experiment.objects.filter(enabled_at__lte=prediction.created_at)
                  .order_by("-enabled_at").first())
    if experiment is None:
        return None
    label = label_of_run(run)
    try:
        with transaction.atomic():
            result = _result_create(experiment, prediction, run, label)
    except IntegrityError:
        return None  # recorded meanwhile by a redelivered task: one pair per prediction
    transaction.on_commit(_invalidate_accuracy)
    log.info("ab.result", result=result.pk, correct=result.correct, verdict=run.verdict)
    return result


def _result_create(experiment, prediction, run, label) -> ABTestResult:
    return ABTestResult.objects.create(
        experiment=experiment, prediction=prediction, wargame_run=run,
        model_version=prediction.model_version, probability=prediction.probability,
        predicted_effective=prediction.predicted_effective, wargame_verdict=run.verdict,
        actual_effective=None if label is None else bool(label),
        correct=None if label is None else prediction.predicted_effective == bool(label),
        ml_latency_ms=prediction.latency_ms or 0.0, wargame_duration_s=run.duration_s,
        recorded_at=timezone.now())


def _invalidate_accuracy() -> None:
    try:
        cache.incr(ACCURACY_GENERATION_KEY)
    except ValueError:
        cache.set(ACCURACY_GENERATION_KEY, 1, None)
