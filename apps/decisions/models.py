"""Decision: a reviewer's verdict on an APV's patch revision, and its audit record.

Neither is ever updated or deleted through the API or the admin. A decision is made in two
steps (docs/patches-and-decisions.md, "Two steps"): it is recorded, with its audit row and
the APVs it moves, in one transaction (``outcome`` ``applying`` when git or the forge must
act, else ``applied``); the action runs after commit in a Celery task, and its outcome is
the only later write: ``applied``, or ``apply_failed`` with the reason (retryable).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from apps.reviews.models import APV, Patch


class DecisionType(models.TextChoices):
    APPROVE = "approve", "Approve"
    REJECT = "reject", "Reject"
    MODIFY = "modify", "Request changes"
    ESCALATE = "escalate", "Escalate"
    ACCEPT_RISK = "accept_risk", "Accept risk"
    FALSE_POSITIVE = "false_positive", "False positive"


class Outcome(models.TextChoices):
    APPLYING = "applying", "Applying"
    APPLIED = "applied", "Applied"
    APPLY_FAILED = "apply_failed", "Apply failed"


class Decision(models.Model):
    apv = models.ForeignKey(APV, on_delete=models.PROTECT, related_name="decisions")
    patch = models.ForeignKey(Patch, null=True, blank=True, on_delete=models.PROTECT,
                              related_name="decisions")
    patch_revision = models.PositiveIntegerField(null=True, blank=True)
    decision = models.CharField(max_length=20, choices=DecisionType.choices, db_index=True)
    justification = models.TextField()
    confidence = models.FloatField(default=1.0)
    modifications = models.TextField(blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                 related_name="decisions")
    decided_at = models.DateTimeField(db_index=True)
    #: What the decision did, e.g. "merged", "branch_deleted", or "<action>_failed"; empty
    #: while its action is ``applying``.
    action_taken = models.CharField(max_length=40, blank=True)
    action_error = models.TextField(blank=True)
    outcome = models.CharField(max_length=20, choices=Outcome.choices, default=Outcome.APPLIED,
                               db_index=True)
    #: The other APVs the same patch revision covered, which this decision moved with it.
    also_applied_to = models.ManyToManyField(APV, blank=True,
                                             related_name="decisions_via_patch")
    apply_attempts = models.PositiveIntegerField(default=0)
    #: Set while an attempt runs: a lease (DECISION_APPLY_LEASE_S), so two workers never act
    #: on one decision at once and a worker that died is replaced once it ends.
    apply_started_at = models.DateTimeField(null=True, blank=True)
    applied_at = models.DateTimeField(null=True, blank=True)
    #: One entry per attempt and retry: when, by whom or what, and how it ended.
    apply_log = models.JSONField(default=list, blank=True)
    status_before = models.CharField(max_length=20)
    status_after = models.CharField(max_length=20)
    review_seconds = models.FloatField(null=True, blank=True,
                                       help_text="from entering pending_review to this decision")
    # NULL, not "", when absent: the unique constraint must only bind requests with a key.
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    #: SHA-256 of what the keyed request asked (APV and body): a key sent again with
    #: another request is refused (422), not answered with this decision.
    idempotency_fingerprint = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["-decided_at"]
        constraints = [
            models.UniqueConstraint(fields=["reviewer", "idempotency_key"],
                                    name="uniq_decision_idempotency_key"),
        ]
        permissions = [
            ("decide_escalated", "Can decide escalated APVs"),
            ("accept_risk", "Can accept the risk of an APV"),
        ]

    def __str__(self) -> str:
        return f"{self.apv.code}: {self.decision}"

    @property
    def succeeded(self) -> bool:
        return self.outcome == Outcome.APPLIED


class DecisionAudit(models.Model):
    """Who decided, when, from where, and a snapshot of what they were shown."""

    decision = models.OneToOneField(Decision, on_delete=models.PROTECT, related_name="audit")
    reviewer_username = models.CharField(max_length=150)
    recorded_at = models.DateTimeField()
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.TextField(blank=True)
    via = models.CharField(max_length=20, help_text="api, admin or command")
    snapshot = models.JSONField()

    def __str__(self) -> str:
        return f"audit of {self.decision}"
