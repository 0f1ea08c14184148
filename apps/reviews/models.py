"""APV: one advisory affecting one dependency of one project (spec, Pipeline 3)."""

from __future__ import annotations

from django.conf import settings
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
    #: The patch revision a decision applies to (the latest proposal for this APV).
    current_patch = models.ForeignKey(
        "reviews.Patch", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    #: When the APV last entered pending_review: review time is measured from here.
    pending_review_at = models.DateTimeField(null=True, blank=True)
    assigned_group = models.ForeignKey(
        "auth.Group", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="assigned_apvs",
    )
    risk_accepted_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "APV"
        verbose_name_plural = "APVs"
        ordering = ["-priority", "sla_due_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "dependency", "advisory"], name="uniq_apv_exposure"
            )
        ]
        indexes = [
            models.Index(fields=["status", "-priority", "sla_due_at"]),
            # The API list's default order with no status filter: a page is read off the
            # index instead of joining and sorting every APV (issue 12, docs/performance.md).
            models.Index(fields=["-priority", "sla_due_at"], name="apv_default_order"),
        ]

    def __str__(self) -> str:
        return self.code

    @property
    def is_overdue(self) -> bool:
        return self.status != APVStatus.RESOLVED and self.sla_due_at < timezone.now()


class PatchStrategy(models.TextChoices):
    DEPENDENCY_UPGRADE = "dependency_upgrade", "Dependency upgrade"
    CODE_PATCH = "code_patch", "Code patch"
    CONFIG_CHANGE = "config_change", "Configuration change"
    VIRTUAL_PATCH = "virtual_patch", "Virtual patch"
    MANUAL = "manual", "Manual"


class PatchState(models.TextChoices):
    PROPOSED = "proposed", "Proposed"
    SUPERSEDED = "superseded", "Superseded by a newer revision"
    MERGED = "merged", "Merged"
    CLOSED = "closed", "Closed (rejected)"


class RiskLevel(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"


class Patch(TimeStampedModel):
    """A proposed fix for one or more APVs (APVs of one package share an upgrade patch).

    Committed on its own branch ``immune/<apv-code>-r<revision>``; never on the default
    branch. A new revision supersedes the previous one after ``changes_requested``.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="patches")
    apvs = models.ManyToManyField(APV, related_name="patches")
    strategy = models.CharField(max_length=20, choices=PatchStrategy.choices)
    revision = models.PositiveIntegerField()
    state = models.CharField(max_length=12, choices=PatchState.choices,
                             default=PatchState.PROPOSED, db_index=True)
    ecosystem = models.CharField(max_length=50, blank=True)
    package = models.CharField(max_length=300, blank=True, help_text="normalised name")
    from_version = models.CharField(max_length=200, blank=True)
    target_version = models.CharField(max_length=200, blank=True)
    risk_level = models.CharField(max_length=10, choices=RiskLevel.choices,
                                  default=RiskLevel.MEDIUM)
    title = models.CharField(max_length=300)
    notes = models.JSONField(default=list, blank=True, help_text="for the reviewer")
    diff = models.TextField(blank=True)
    base_commit = models.CharField(max_length=64, blank=True)
    branch = models.CharField(max_length=300, blank=True)
    commit_sha = models.CharField(max_length=64, blank=True)
    merge_commit = models.CharField(max_length=64, blank=True)
    forge_pr_number = models.PositiveIntegerField(null=True, blank=True)
    forge_pr_url = models.URLField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+", help_text="empty when proposed by immune itself",
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.title} (r{self.revision})"
