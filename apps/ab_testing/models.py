"""Experiment and ABTestResult (spec, Pipeline 7): ML-routed patches sampled for a ground
truth wargame, and each (prediction, verdict) pair that came of it."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from apps.core.models import TimeStampedModel


class Experiment(TimeStampedModel):
    """One enabled period of A/B testing. The rows are their own audit: who enabled it,
    at which rate, and who disabled it when. At most one is enabled at a time."""

    rate = models.FloatField(help_text="share of ML-routed patches also wargamed (0–1]")
    enabled = models.BooleanField(default=True)
    enabled_at = models.DateTimeField()
    enabled_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.PROTECT, related_name="+")
    enabled_by_name = models.CharField(max_length=150)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                    on_delete=models.PROTECT, related_name="+")
    disabled_by_name = models.CharField(max_length=150, blank=True)
    via = models.CharField(max_length=20, help_text="command, api, admin or demo")

    class Meta:
        ordering = ["-enabled_at"]
        constraints = [
            models.UniqueConstraint(fields=["enabled"], condition=models.Q(enabled=True),
                                    name="one_enabled_experiment"),
            models.CheckConstraint(condition=models.Q(rate__gt=0) & models.Q(rate__lte=1),
                                   name="experiment_rate_in_0_1"),
        ]

    def __str__(self) -> str:
        state = "enabled" if self.enabled else "disabled"
        return f"experiment #{self.pk} ({state}, rate {self.rate:.2f})"


class ABTestResult(models.Model):
    """The model's answer and the wargame's answer for one sampled patch revision."""

    experiment = models.ForeignKey(Experiment, on_delete=models.PROTECT,
                                   related_name="results")
    prediction = models.OneToOneField("ml.Prediction", on_delete=models.PROTECT,
                                      related_name="ab_result")
    wargame_run = models.OneToOneField("wargaming.WargameRun", on_delete=models.PROTECT,
                                       related_name="ab_result")
    model_version = models.ForeignKey("ml.ModelVersion", on_delete=models.PROTECT,
                                      related_name="ab_results")
    probability = models.FloatField()
    predicted_effective = models.BooleanField()
    wargame_verdict = models.CharField(max_length=20)
    #: null when the verdict is no label (error, timeout, inconclusive, not reproducible):
    #: then the pair is kept but not counted.
    actual_effective = models.BooleanField(null=True, blank=True)
    correct = models.BooleanField(null=True, blank=True)
    ml_latency_ms = models.FloatField()
    wargame_duration_s = models.FloatField(null=True, blank=True)
    recorded_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-recorded_at"]
        verbose_name = "A/B test result"
        verbose_name_plural = "A/B test results"

    def __str__(self) -> str:
        said = "effective" if self.predicted_effective else "not effective"
        return f"model said {said}, wargame {self.wargame_verdict}"
