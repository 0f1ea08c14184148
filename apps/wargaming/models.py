"""WargameRun: a patch attacked before and after, for real (spec, Pipeline 5)."""

from __future__ import annotations

from django.db import models

from apps.core.models import TimeStampedModel
from apps.reviews.models import Patch


class Verdict(models.TextChoices):
    PATCH_EFFECTIVE = "patch_effective", "Patch effective"
    PATCH_INEFFECTIVE = "patch_ineffective", "Patch ineffective (still exploitable)"
    NOT_REPRODUCIBLE = "not_reproducible", "Not reproducible (baseline not exploited)"
    REGRESSION = "regression", "Regression (tests fail on the patch)"
    INCONCLUSIVE = "inconclusive", "Inconclusive"
    ERROR = "error", "Error (no verdict about the patch)"
    TIMEOUT = "timeout", "Timeout (no verdict about the patch)"


class RunState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    FINISHED = "finished", "Finished"


class WargameRun(TimeStampedModel):
    #: null for an ad-hoc run (``manage.py wargame --package``) outside any project.
    patch = models.ForeignKey(Patch, null=True, blank=True, on_delete=models.CASCADE,
                              related_name="wargame_runs")
    patch_revision = models.PositiveIntegerField(null=True, blank=True)
    kind = models.CharField(max_length=10, default="package", help_text="package or http")
    state = models.CharField(max_length=10, choices=RunState.choices, default=RunState.QUEUED,
                             db_index=True)
    verdict = models.CharField(max_length=20, choices=Verdict.choices, blank=True,
                               db_index=True)
    confidence = models.FloatField(null=True, blank=True)
    reason = models.TextField(blank=True, help_text="why this verdict, in a sentence")
    exploit = models.CharField(max_length=500, blank=True, help_text="the PoC that ran")
    package = models.CharField(max_length=300, blank=True)
    baseline_version = models.CharField(max_length=200, blank=True)
    patched_version = models.CharField(max_length=200, blank=True)
    network_isolated = models.BooleanField(null=True, blank=True)
    sandbox = models.JSONField(default=dict, blank=True, help_text="limits that applied")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_s = models.FloatField(null=True, blank=True)
    trigger = models.CharField(max_length=100, blank=True)
    #: Verdict scope: the OSV ids of the patch's advisories the exploit covers. The verdict
    #: is about these only; the patch's other advisories have "no exploit" (apps.wargaming
    #: .scope, docs/wargaming.md).
    advisories = models.JSONField(default=list, blank=True,
                                  help_text="OSV ids of the advisories the exploit covers")
    #: "hostname:pid" of the process that claimed the run last: a redelivered task re-runs
    #: a running run whose claimant is gone (docs/wargaming.md, "Every run ends").
    claimed_by = models.CharField(max_length=300, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="times the run was claimed")
    #: When the reaper re-enqueued a run that stayed queued (it does so once).
    requeued_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # One live run per patch revision: a redelivered task finds it, never a second.
            models.UniqueConstraint(fields=["patch", "patch_revision"],
                                    condition=models.Q(patch__isnull=False),
                                    name="uniq_wargame_per_patch_revision"),
        ]

    def __str__(self) -> str:
        return f"wargame #{self.pk} {self.verdict or self.state}"


class WargamePhase(models.Model):
    run = models.ForeignKey(WargameRun, on_delete=models.CASCADE, related_name="phases")
    name = models.CharField(max_length=12, help_text="baseline, patched or regression")
    outcome = models.CharField(max_length=20, help_text="exploited, blocked, passed, failed, "
                               "inconclusive, error, timeout, skipped")
    exit_code = models.IntegerField(null=True, blank=True)
    exploited = models.BooleanField(null=True, blank=True)
    duration_s = models.FloatField(null=True, blank=True)
    evidence = models.JSONField(default=dict, blank=True)
    output = models.TextField(blank=True, help_text="stdout and stderr, truncated")
    environment = models.JSONField(default=list, blank=True, help_text="what was installed")

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.name}: {self.outcome}"
