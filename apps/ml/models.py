"""ModelVersion and Prediction (spec, Pipeline 6): the learned estimate that a patch is
effective, and the model versions that make it."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from apps.core.models import TimeStampedModel
from apps.reviews.models import Patch


class Route(models.TextChoices):
    ML = "ml", "ML (straight to review with the prediction)"
    WARGAME = "wargame", "Wargame (a full run decides)"


class ModelVersion(TimeStampedModel):
    """One training: what was learned from which labels, how well it cross-validated, and
    the serialised pipeline (skops, checked against its SHA-256 on every load)."""

    version = models.PositiveIntegerField(unique=True)
    algorithm = models.CharField(max_length=100)
    parameters = models.JSONField(default=dict)
    feature_names = models.JSONField(default=list, help_text="the vectorised columns")
    feature_means = models.JSONField(default=dict, help_text="training means of each column, "
                                     "overall and per class, for explaining")
    training_size = models.PositiveIntegerField()
    class_balance = models.JSONField(default=dict, help_text="labels per class")
    #: The newest wargame run among the labels, so beat retrains only on new labels.
    last_label_run_id = models.PositiveIntegerField(default=0)
    cv_folds = models.PositiveSmallIntegerField()
    cv_accuracy = models.FloatField()
    cv_precision = models.FloatField()
    cv_recall = models.FloatField()
    cv_f1 = models.FloatField()
    cv_roc_auc = models.FloatField(null=True, blank=True)
    cv_brier = models.FloatField()
    #: Leave-one-package-out figures (null when the labels span fewer than 3 packages):
    #: what routing trusts for a package the model never saw (docs/ml.md, "Evaluation").
    grouped_accuracy = models.FloatField(null=True, blank=True)
    grouped_brier = models.FloatField(null=True, blank=True)
    evaluation = models.JSONField(default=dict, blank=True, help_text="stratified and "
                                  "grouped figures with 95 % intervals, calibration, per "
                                  "package")
    training_packages = models.JSONField(default=list, blank=True,
                                         help_text="the packages among the labels")
    training_sources = models.JSONField(default=dict, blank=True,
                                        help_text="where the labels came from, and what "
                                        "was left out and why")
    #: Which feature dictionary the model was trained on (apps.ml.features.FEATURE_SET):
    #: a model of another set is never asked to predict (its columns would not match).
    feature_set = models.PositiveSmallIntegerField(default=1)
    candidates = models.JSONField(default=list, help_text="every algorithm tried, with its "
                                  "cross-validated metrics, and why this one won")
    artifact = models.BinaryField()
    artifact_format = models.CharField(max_length=20, default="skops")
    artifact_sha256 = models.CharField(max_length=64)
    trigger = models.CharField(max_length=100, help_text="command, api:<user>, beat, demo")
    trained_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    training_seconds = models.FloatField(default=0.0)
    is_active = models.BooleanField(default=False)
    activated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-version"]
        permissions = [("activate_modelversion", "Can activate a model version")]
        constraints = [
            models.UniqueConstraint(fields=["is_active"], condition=models.Q(is_active=True),
                                    name="one_active_model_version"),
        ]

    def __str__(self) -> str:
        return f"model v{self.version} ({self.algorithm})"


class ModelActivation(models.Model):
    """Audit of activating a model version: who, when, from where, replacing what."""

    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT,
                                      related_name="activations")
    previous = models.ForeignKey(ModelVersion, null=True, blank=True,
                                 on_delete=models.PROTECT, related_name="+")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                              on_delete=models.PROTECT, related_name="+")
    actor_name = models.CharField(max_length=150, help_text="user name, or the process")
    via = models.CharField(max_length=20, help_text="admin, api, command or training")
    reason = models.TextField(blank=True)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.TextField(blank=True)
    at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"v{self.model_version.version} activated by {self.actor_name}"


class Prediction(TimeStampedModel):
    """One ML-first routing of a patch revision: the estimate, and where the patch went."""

    patch = models.ForeignKey(Patch, on_delete=models.CASCADE, related_name="predictions")
    patch_revision = models.PositiveIntegerField()
    #: null when no model was active: then the route is always ``wargame``.
    model_version = models.ForeignKey(ModelVersion, null=True, blank=True,
                                      on_delete=models.PROTECT, related_name="predictions")
    probability = models.FloatField(null=True, blank=True,
                                    help_text="P(patch effective)")
    confidence = models.FloatField(null=True, blank=True,
                                   help_text="max(p, 1 − p): how sure, either way")
    predicted_effective = models.BooleanField(null=True, blank=True)
    threshold = models.FloatField()
    route = models.CharField(max_length=10, choices=Route.choices, db_index=True)
    reason = models.CharField(max_length=300)
    features = models.JSONField(default=dict)
    feature_hash = models.CharField(max_length=64)
    top_features = models.JSONField(default=list, help_text="the features that moved the "
                                    "probability most, with their effect")
    latency_ms = models.FloatField(null=True, blank=True)
    cached = models.BooleanField(default=False)
    trigger = models.CharField(max_length=100)
    #: The run this routing started: the wargame of route ``wargame``, or an A/B shadow run.
    wargame_run = models.ForeignKey("wargaming.WargameRun", null=True, blank=True,
                                    on_delete=models.SET_NULL, related_name="predictions")
    ab_sampled = models.BooleanField(default=False)
    #: Filled when a wargame of this patch revision finishes with a label verdict.
    outcome_verdict = models.CharField(max_length=20, blank=True)
    agrees = models.BooleanField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["patch", "patch_revision"])]

    def __str__(self) -> str:
        if self.probability is None:
            return f"patch {self.patch_id} r{self.patch_revision}: no model → {self.route}"
        return (f"patch {self.patch_id} r{self.patch_revision}: p={self.probability:.2f} "
                f"→ {self.route}")
