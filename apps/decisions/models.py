"""Decision: a reviewer's verdict on an APV's patch revision, and its audit record.

Neither is ever updated or deleted through the API or the admin; the only write after
creation is the service recording the outcome of the action the decision triggered,
inside the same transaction.
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
    #: What the decision did, e.g. "merged", "branch_deleted", or "<action>_failed".
    action_taken = models.CharField(max_length=40)
    action_error = models.TextField(blank=True)
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
        return not self.action_taken.endswith("_failed")


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
