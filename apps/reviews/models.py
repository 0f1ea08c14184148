"""APV: one advisory affecting one dependency of one project (spec, Pipeline 3)."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from apps.advisories.models import Advisory, Severity
from apps.core.models import TimeStampedModel
from apps.inventory.models import Dependency, Project


class APVStatus(models.TextChoices):
    OPEN = "open", "Open"
    PATCH_PROPOSED = "patch_proposed", "Patch proposed"
    VALIDATING = "validating", "Validating"
    PENDING_REVIEW = "pending_review", "Pending review"
    APPROVED = "approved", "Approved"
    APPLIED = "applied", "Applied"
    REJECTED = "rejected", "Rejected"
    CHANGES_REQUESTED = "changes_requested", "Changes requested"
    ESCALATED = "escalated", "Escalated"
    RISK_ACCEPTED = "risk_accepted", "Risk accepted"
    FALSE_POSITIVE = "false_positive", "False positive"
    RESOLVED = "resolved", "Resolved"


class APVCodeCounter(models.Model):
    """Per-day sequence behind ``APV-YYYYMMDD-NNNN``, incremented atomically."""

    day = models.DateField(primary_key=True)
    last = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.day}: {self.last}"


class APV(TimeStampedModel):
    code = models.CharField(max_length=32, unique=True)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="apvs")
    dependency = models.ForeignKey(Dependency, on_delete=models.PROTECT, related_name="apvs")
    advisory = models.ForeignKey(Advisory, on_delete=models.PROTECT, related_name="apvs")
    status = models.CharField(
        max_length=20, choices=APVStatus.choices, default=APVStatus.OPEN, db_index=True
    )
    severity = models.CharField(max_length=10, choices=Severity.choices, db_index=True)
    cvss_score = models.FloatField(null=True, blank=True)
    priority = models.PositiveSmallIntegerField(
        db_index=True, help_text="0–10, higher is more urgent (docs/apv.md)"
    )
    fixed_in = models.JSONField(default=list, blank=True, help_text="fixed versions, lowest first")
    sla_due_at = models.DateTimeField(db_index=True)
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution = models.CharField(max_length=200, blank=True)

    class Meta:
        verbose_name = "APV"
        verbose_name_plural = "APVs"
        ordering = ["-priority", "sla_due_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "dependency", "advisory"], name="uniq_apv_exposure"
            )
        ]
        indexes = [models.Index(fields=["status", "-priority", "sla_due_at"])]

    def __str__(self) -> str:
        return self.code

    @property
    def is_overdue(self) -> bool:
        return self.status != APVStatus.RESOLVED and self.sla_due_at < timezone.now()
