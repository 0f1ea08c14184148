"""Writes of ML-first: training and activating model versions, predicting and routing.

Routing (spec, Pipeline 6): with an active model, a proposed patch is predicted; when the
model is at least ``ML_FIRST_THRESHOLD`` sure either way it goes straight to review with the
prediction (route ``ml``), otherwise a full wargame runs (route ``wargame``). With no active
model every patch is wargamed.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import Max, Q
from django.utils import timezone

from apps.core.errors import ConflictError, NotFoundError
from apps.core.queue import enqueue_on_commit
from apps.ml.errors import ModelIntegrityError, NotEnoughLabels
from apps.ml.features import FEATURE_SET, feature_hash, patch_features, row_features
from apps.ml.hooks import routed_to_review
from apps.ml.models import ModelActivation, ModelVersion, Prediction, Route
from apps.reviews.models import APVStatus, Patch
from apps.wargaming.models import RunState, Verdict, WargameRun

log = structlog.get_logger(__name__)


def _training():
    """``apps.ml.training``, imported on first use: scikit-learn takes about a second to
    import, and most processes (web servers, workers, commands) never train or predict."""
    from apps.ml import training

    return training

#: Wargame verdicts that are labels (positive = the patch is effective). error, timeout,
#: inconclusive and not_reproducible say nothing about the patch, so they teach nothing.
LABELS = {Verdict.PATCH_EFFECTIVE: 1, Verdict.PATCH_INEFFECTIVE: 0, Verdict.REGRESSION: 0}

#: skops refuses to load a type it was not told to trust; these are the only non-default
#: types our pipelines hold. Anything else in an artifact means it is not ours.
TRUSTED_TYPES = frozenset({
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.tree._tree.Tree",
})

_loaded: dict[int, tuple[str, object]] = {}


def label_of(verdict: str) -> int | None:
    return LABELS.get(verdict)


def label_of_run(run: WargameRun) -> int | None:
    """A run's label, when it has one: a label verdict about at least one advisory. A run
    whose exploit covers none of its patch's advisories proves nothing about the patch
    (verdict scope, docs/wargaming.md)."""
    return label_of(run.verdict) if run.advisories else None


# --- Training ---------------------------------------------------------------------------------

def label_runs():
    """Finished wargames of a patch revision whose verdict is a label and whose exploit
    covers at least one of its advisories: the real outcomes the model learns from,
    nothing hand-written."""
    return (WargameRun.objects.filter(patch__isnull=False, state=RunState.FINISHED,
                                      verdict__in=list(LABELS))
            .exclude(advisories=[]))


@dataclass
class TrainingSet:
    features: list[dict] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    #: The package of each label: leave-one-package-out cross-validation groups by it.
    groups: list[str] = field(default_factory=list)
    newest_run: int = 0
    sources: dict = field(default_factory=dict)


def training_set(*, corpus: Path | str | None = None,
                 with_corpus: bool = True) -> TrainingSet:
    """Every label the model learns from: the label runs of patch revisions (their
    advisory features describe the advisories the run's exploit covered), and the wargame
    corpus (docs/ml.md, "The corpus") — the rows of ``corpus`` (an exported JSON-lines
    file) when given, else the corpus runs stored in this database (``with_corpus``).
    A corpus row teaches only with a label verdict, an exploit that covered an advisory,
    and that advisory in the database (its facts are features); the rest is counted in
    ``sources`` with the reason."""
    from apps.wargaming.corpus import corpus_rows, read_corpus

    data = TrainingSet()
    patch_runs = 0
    for run in label_runs().select_related("patch").order_by("id"):
        data.features.append(patch_features(run.patch, scope=list(run.advisories)))
        data.labels.append(LABELS[run.verdict])
        data.groups.append(run.patch.package or "unknown")
        data.newest_run = max(data.newest_run, run.pk)
        patch_runs += 1
    data.sources = {"patch_runs": patch_runs}
    if corpus is None and not with_corpus:
        return data
    rows = read_corpus(Path(corpus)) if corpus is not None else corpus_rows()
    skipped: Counter = Counter()
    used = 0
    for row in rows:
        label = LABELS.get(row.get("verdict"))
        if label is None:
            skipped["no label verdict (" + str(row.get("verdict")) + ")"] += 1
            continue
        if not row.get("advisory_ids"):
            skipped["the exploit covered no advisory"] += 1
            continue
        features = row_features(row)
        if features is None:
            skipped["its advisories are not in the database (import them first)"] += 1
            continue
        data.features.append(features)
        data.labels.append(label)
        data.groups.append(str(row["package"]))
        if corpus is None:
            data.newest_run = max(data.newest_run, int(row.get("run_id") or 0))
        used += 1
    data.sources.update({"corpus": str(corpus) if corpus is not None else "stored corpus runs",
                         "corpus_rows": len(rows), "corpus_labels": used,
                         "corpus_skipped": dict(skipped)})
    return data


def labels_count() -> dict[str, int]:
    """Labels per class, counted in the database (no features computed)."""
    effective = label_runs().filter(verdict=Verdict.PATCH_EFFECTIVE).count()
    return {"effective": effective, "not_effective": label_runs().count() - effective}


def model_train(*, trigger: str, user=None, activate: bool | None = None,
                corpus: Path | str | None = None) -> ModelVersion:
    """Train, cross-validate and store a model version: on the label runs of patch
    revisions and the wargame corpus (``corpus``: an exported file; default: the corpus
    runs stored here). It becomes active when ``activate`` says so, or (``None``) when no
    version is active yet. Raises NotEnoughLabels."""
    import skops.io

    data = training_set(corpus=corpus)
    features, labels, newest = data.features, data.labels, data.newest_run
    try:
        trained = _training().train(features, labels, groups=data.groups,
                                 min_per_class=settings.ML_MIN_LABELS_PER_CLASS)
    except _training().NotEnoughLabels as exc:
        message = str(exc)
        missing = sum(n for reason, n in data.sources.get("corpus_skipped", {}).items()
                      if "not in the database" in reason)
        if missing:
            message += (f"; {missing} corpus rows were left out because their advisories are "
                        "not in the database (import the advisory feed first)")
        raise NotEnoughLabels(message, details={"labels": exc.counts,
                                                "minimum_per_class": exc.minimum,
                                                "sources": data.sources}) from exc
    artifact = skops.io.dumps(trained.pipeline)
    fields = {
        "algorithm": trained.algorithm, "parameters": trained.parameters,
        "feature_names": trained.feature_names, "feature_means": trained.feature_means,
        "training_size": len(labels), "class_balance": trained.class_balance,
        "last_label_run_id": newest, "cv_folds": trained.folds,
        "cv_accuracy": trained.metrics["accuracy"], "cv_precision": trained.metrics["precision"],
        "cv_recall": trained.metrics["recall"], "cv_f1": trained.metrics["f1"],
        "cv_roc_auc": trained.metrics["roc_auc"], "cv_brier": trained.metrics["brier"],
        "grouped_accuracy": (trained.evaluation.get("grouped") or {}).get("accuracy"),
        "grouped_brier": (trained.evaluation.get("grouped") or {}).get("brier"),
        "evaluation": trained.evaluation, "training_packages": trained.groups,
        "training_sources": data.sources, "feature_set": FEATURE_SET,
        "candidates": trained.candidates, "artifact": artifact,
        "artifact_sha256": hashlib.sha256(artifact).hexdigest(), "trigger": trigger,
        "trained_by": user if user is not None and user.is_authenticated else None,
        "training_seconds": round(trained.seconds, 3),
    }
    for attempt in range(3):
        try:
            with transaction.atomic():
                latest = ModelVersion.objects.aggregate(v=Max("version"))["v"] or 0
                version = ModelVersion.objects.create(version=latest + 1, **fields)
                if activate or (activate is None and
                                not ModelVersion.objects.filter(is_active=True).exists()):
                    model_activate(model_version=version, actor=user,
                                   actor_name=trigger if user is None else None,
                                   via="training", reason="trained "
                                   + ("and activated on request" if activate else
                                      "while no version was active"))
            break
        except IntegrityError:
            if attempt == 2:
                raise
    log.info("ml.model_trained", version=version.version, algorithm=version.algorithm,
             size=version.training_size, cv_accuracy=round(version.cv_accuracy, 3),
             active=version.is_active)
    return version


def retrain_if_new_labels(*, trigger: str = "beat") -> ModelVersion | None:
    """Weekly: train when at least ML_RETRAIN_MIN_NEW_LABELS labels arrived since the
    newest version (or there is no version). The new version becomes active only when
    none is: replacing a model a lead chose is the lead's call."""
    from apps.wargaming.corpus import CORPUS_TRIGGER

    latest = ModelVersion.objects.defer("artifact").order_by("-version").first()
    since = latest.last_label_run_id if latest else 0
    new = label_runs().filter(pk__gt=since).count() + WargameRun.objects.filter(
        trigger=CORPUS_TRIGGER, state=RunState.FINISHED, verdict__in=list(LABELS),
        pk__gt=since).count()
    if latest is not None and new < settings.ML_RETRAIN_MIN_NEW_LABELS:
        log.info("ml.retrain_skipped", new_labels=new,
                 needed=settings.ML_RETRAIN_MIN_NEW_LABELS)
        return None
    try:
        return model_train(trigger=trigger)
    except NotEnoughLabels as exc:
        log.info("ml.retrain_skipped", reason=exc.message)
        return None


# --- Activation ---------------------------------------------------------------------------

@transaction.atomic
def model_activate(*, model_version: ModelVersion, actor=None, actor_name: str | None = None,
                   via: str, reason: str = "", client_ip: str | None = None,
                   user_agent: str = "") -> ModelActivation:
    """Make ``model_version`` the one active version, with an audit row in the same
    transaction. Activating the active version again is refused (409)."""
    locked = list(ModelVersion.objects.select_for_update().filter(
        Q(pk=model_version.pk) | Q(is_active=True)).defer("artifact"))
    target = next((m for m in locked if m.pk == model_version.pk), None)
    if target is None:
        raise NotFoundError(f"model version {model_version.pk} does not exist")
    if target.is_active:
        raise ConflictError(f"model v{target.version} is already active")
    previous = next((m for m in locked if m.is_active), None)
    now = timezone.now()
    if previous is not None:
        ModelVersion.objects.filter(pk=previous.pk).update(is_active=False, updated_at=now)
    ModelVersion.objects.filter(pk=target.pk).update(is_active=True, activated_at=now,
                                                     updated_at=now)
    model_version.is_active, model_version.activated_at = True, now
    name = actor_name or (actor.get_username() if actor is not None else "system")
    audit = ModelActivation.objects.create(
        model_version=target, previous=previous, actor=actor, actor_name=name, via=via,
        reason=reason, client_ip=client_ip, user_agent=user_agent[:1000], at=now)
    log.info("ml.model_activated", version=target.version, by=name, via=via,
             previous=previous.version if previous else None)
    return audit


# --- Predicting ---------------------------------------------------------------------------

def active_model() -> ModelVersion | None:
    return (ModelVersion.objects.filter(is_active=True)
            .only("pk", "version", "artifact_sha256", "feature_means", "feature_set",
                  "training_packages", "grouped_accuracy", "evaluation").first())


def model_load(model_version: ModelVersion):
    """The fitted pipeline, from the process cache or the database; the artifact's
    SHA-256 must match the one recorded at training, and only known types are loaded."""
    import skops.io

    hit = _loaded.get(model_version.pk)
    if hit and hit[0] == model_version.artifact_sha256:
        return hit[1]
    blob = bytes(ModelVersion.objects.values_list("artifact", flat=True)
                 .get(pk=model_version.pk))
    digest = hashlib.sha256(blob).hexdigest()
    if digest != model_version.artifact_sha256:
        raise ModelIntegrityError(
            f"model v{model_version.version}: artifact hash {digest[:12]}… does not match "
            f"the recorded {model_version.artifact_sha256[:12]}…; refusing to load it")
    untrusted = set(skops.io.get_untrusted_types(data=blob))
    if untrusted - TRUSTED_TYPES:
        raise ModelIntegrityError(f"model v{model_version.version} holds unexpected types: "
                                  + ", ".join(sorted(untrusted - TRUSTED_TYPES)))
    pipeline = skops.io.loads(blob, trusted=sorted(untrusted))
    _loaded[model_version.pk] = (digest, pipeline)
    return pipeline


@dataclass(frozen=True)
class Estimate:
    probability: float
    top_features: list[dict]
    latency_ms: float
    cached: bool


def prediction_cache_key(model_version: ModelVersion, features: dict) -> str:
    # By the artifact's hash, not the version number: numbers restart on another database
    # sharing the Redis, a retrained artifact never does.
    return f"ml:prediction:{model_version.artifact_sha256[:24]}:{feature_hash(features)}"


def estimate(model_version: ModelVersion, features: dict) -> Estimate:
    """P(effective) for a feature dictionary; cached 24 h by (model version, feature hash)."""
    started = time.perf_counter()
    key = prediction_cache_key(model_version, features)
    hit = cache.get(key)
    if hit is not None:
        return Estimate(hit["p"], hit["top"], (time.perf_counter() - started) * 1000, True)
    pipeline = model_load(model_version)
    probability, top = _training().explain(pipeline, features, model_version.feature_means)
    cache.set(key, {"p": probability, "top": top}, settings.ML_PREDICTION_CACHE_S)
    return Estimate(probability, top, (time.perf_counter() - started) * 1000, False)


def grouped_accuracy_for(model: ModelVersion, strategy: str) -> float | None:
    """How the model did on packages it never saw, for patches of this strategy (the
    leave-one-package-out accuracy of that strategy's rows; the pooled one when the
    strategy had none; None when not measured)."""
    grouped = (model.evaluation or {}).get("grouped") or {}
    figures = (grouped.get("per_strategy") or {}).get(strategy)
    return figures["accuracy"] if figures else model.grouped_accuracy


def _unseen_package_reason(model: ModelVersion, patch: Patch, threshold: float) -> str:
    """Why a confident prediction still goes to a wargame: its package was never among the
    model's labels and the model's leave-one-package-out accuracy — how it does on a
    package it never saw, for this kind of patch — is below the routing threshold ("" when
    neither)."""
    if patch.package in set(model.training_packages or []):
        return ""
    grouped = grouped_accuracy_for(model, patch.strategy)
    if grouped is not None and grouped >= threshold:
        return ""
    figure = "not measured (fewer than 3 packages)" if grouped is None else f"{grouped:.2f}"
    return (f"{patch.package or 'this package'} was never seen in training and the model's "
            f"leave-one-package-out accuracy on {patch.strategy} patches is {figure} < "
            f"{threshold:.2f}: a wargame decides")


def prediction_make(*, patch: Patch, trigger: str) -> Prediction:
    """Predict this patch revision with the active model and choose its route.

    Three rules come before the model's confidence: a model trained on another feature set
    is not asked; a code patch whose patched files do not compile is not effective, whatever
    the model says (it goes to review predicted *not* effective); a package the model never
    saw goes to a wargame unless the model's grouped accuracy reaches the threshold."""
    model = active_model()
    threshold = settings.ML_FIRST_THRESHOLD
    features = patch_features(patch) if model is not None else {}
    fields = {"patch": patch, "patch_revision": patch.revision, "threshold": threshold,
              "features": features, "feature_hash": feature_hash(features),
              "trigger": trigger}
    if model is None:
        return Prediction.objects.create(route=Route.WARGAME, reason="no active model: "
                                         "every patch is wargamed", **fields)
    if model.feature_set != FEATURE_SET:
        return Prediction.objects.create(
            model_version=model, route=Route.WARGAME, reason=(
                f"model v{model.version} was trained on feature set {model.feature_set}, not "
                f"{FEATURE_SET}: retrain it (manage.py train_model); a wargame decides"),
            **fields)
    try:
        result = estimate(model, features)
    except Exception as exc:  # noqa: BLE001 (a broken model must never block a proposal)
        message = exc.message if isinstance(exc, ModelIntegrityError) else (
            f"model v{model.version} failed to predict ({type(exc).__name__}); "
            "a wargame decides")
        log.error("ml.model_unusable", version=model.version, error=message)
        return Prediction.objects.create(model_version=model, route=Route.WARGAME,
                                         reason=message[:300], **fields)
    if features.get("compiles") == "no":
        # Its service would not even start: not an effective fix, and no model's
        # confidence says otherwise (issue 17). Straight to review, predicted not effective.
        return Prediction.objects.create(
            model_version=model, probability=0.0, confidence=1.0, predicted_effective=False,
            route=Route.ML, reason=(
                "the patched code does not compile (checked in the sandbox): not effective, "
                f"whatever the model says (it said p = {result.probability:.2f})")[:300],
            top_features=[{"feature": "compiles=no", "effect": round(-result.probability, 4)}],
            latency_ms=round(result.latency_ms, 3), cached=result.cached, **fields)
    confidence = max(result.probability, 1 - result.probability)
    route = Route.ML if confidence >= threshold else Route.WARGAME
    reason = (f"confidence {confidence:.2f} ≥ {threshold:.2f}" if route == Route.ML
              else f"confidence {confidence:.2f} < {threshold:.2f}: a wargame decides")
    if route == Route.ML and (unseen := _unseen_package_reason(model, patch, threshold)):
        route, reason = Route.WARGAME, f"confidence {confidence:.2f}, but {unseen}"
    return Prediction.objects.create(
        model_version=model, probability=result.probability, confidence=confidence,
        predicted_effective=result.probability >= 0.5, route=route, reason=reason[:300],
        top_features=result.top_features, latency_ms=round(result.latency_ms, 3),
        cached=result.cached, **fields)


@dataclass(frozen=True)
class Routing:
    prediction: Prediction
    run: WargameRun | None
    run_created: bool


def ml_first_route(*, patch: Patch, trigger: str) -> Routing:
    """Predict and route one patch revision. Route ``ml``: its APVs waiting in
    ``patch_proposed`` go to ``pending_review`` and A/B testing may queue a shadow
    wargame. Route ``wargame``: a run is queued (the existing one if this revision has
    one). Runs start after commit."""
    from apps.reviews.services.apvs import apvs_move_for_patch
    from apps.wargaming.services import wargame_start
    from apps.wargaming.tasks import run_wargame

    with transaction.atomic():
        prediction = prediction_make(patch=patch, trigger=trigger)
        run, created = None, False
        if prediction.route == Route.ML:
            apvs_move_for_patch(patch=patch, status=APVStatus.PENDING_REVIEW,
                                before=(APVStatus.PATCH_PROPOSED,))
            if prediction.features.get("compiles") != "no":
                # A/B testing checks the model; a patch that does not compile was not the
                # model's call, and its wargame could only end "error".
                run, created = routed_to_review.first(prediction=prediction,
                                                      default=(None, False))
        else:
            run, created = wargame_start(patch=patch, trigger=trigger)
            prediction.wargame_run = run
            prediction.save(update_fields=["wargame_run", "updated_at"])
        if created:
            enqueue_on_commit(run_wargame, run.pk)
    log.info("ml.routed", patch=patch.pk, revision=patch.revision, route=prediction.route,
             probability=prediction.probability, run=run.pk if run else None)
    return Routing(prediction, run, created)


def predictions_settle(*, run: WargameRun) -> int:
    """Record a finished run's verdict on the predictions of its patch revision."""
    label = label_of_run(run)
    if run.patch_id is None or label is None:
        return 0
    settled = 0
    for prediction in Prediction.objects.filter(
            patch_id=run.patch_id, patch_revision=run.patch_revision,
            predicted_effective__isnull=False, outcome_verdict=""):
        prediction.outcome_verdict = run.verdict
        prediction.agrees = prediction.predicted_effective == bool(label)
        prediction.save(update_fields=["outcome_verdict", "agrees", "updated_at"])
        settled += 1
    return settled


def prediction_link_run(*, prediction: Prediction, run: WargameRun,
                        ab_sampled: bool = False) -> None:
    """The wargame that settles this prediction (A/B testing's shadow run, when sampled)."""
    prediction.wargame_run, prediction.ab_sampled = run, ab_sampled or prediction.ab_sampled
    prediction.save(update_fields=["wargame_run", "ab_sampled", "updated_at"])


def model_is_active() -> bool:
    """Whether ML-first routes proposed patches (``reviews.hooks.routing_active``)."""
    return ModelVersion.objects.filter(is_active=True).exists()


def patch_route_on_proposal(*, patch, trigger: str) -> Routing:
    """``reviews.hooks.patch_proposed``: a proposed revision is predicted and routed."""
    return ml_first_route(patch=patch, trigger=trigger)
