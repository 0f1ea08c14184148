"""Notifications (issue 15): one ``Notification`` per event and subject, one ``Delivery``
per notification and target, and the ``Subscription`` rows that choose the email targets.

``Notification`` and ``Delivery`` are audit rows: written by the services only, read-only
in the admin. The unique constraints are what make "one message per APV and event" hold
however often, and however concurrently, detection runs (docs/notifications.md).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from apps.core.models import TimeStampedModel


class Event(models.TextChoices):
    APV_NEW = "apv_new", "New critical, high or KEV-listed APV"
    SLA_WARNING = "sla_warning", "SLA window 80 % used"
    SLA_BREACHED = "sla_breached", "SLA breached"
    PATCH_INEFFECTIVE = "patch_ineffective", "Wargame verdict: patch ineffective"
    ESCALATION = "escalation", "APV escalated to the leads"
    RISK_EXPIRING = "risk_expiring", "Risk acceptance about to expire"
    SANDBOX_UNAVAILABLE = "sandbox_unavailable", "Wargame sandbox unavailable"


class Channel(models.TextChoices):
    EMAIL = "email", "Email"
    WEBHOOK = "webhook", "Webhook"


class Outcome(models.TextChoices):
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed (retries exhausted)"


class Subscription(TimeStampedModel):
    """A user's choice of events (empty: every event) for one project or, with no
    project, for every project, and the channels they arrive on."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="notification_subscriptions")
    project = models.ForeignKey("inventory.Project", null=True, blank=True,
                                on_delete=models.CASCADE, related_name="+",
                                help_text="empty: every project")
    events = models.JSONField(default=list, blank=True,
                              help_text="event names; empty: every event")
    channels = models.JSONField(default=list, blank=True,
                                help_text="email and/or webhook (docs/notifications.md)")
    active = models.BooleanField(default=True, db_index=True)

    class Meta:
        ordering = ["user", "project"]

    def __str__(self) -> str:
        scope = self.project.name if self.project_id else "every project"
        return f"{self.user} — {scope}"

    def wants(self, *, event: str, project_id: int | None) -> bool:
        """Events without a project (the sandbox) reach every subscription choosing them."""
        if self.events and event not in self.events:
            return False
        return self.project_id is None or project_id is None or self.project_id == project_id


class Notification(TimeStampedModel):
    event = models.CharField(max_length=30, choices=Event.choices, db_index=True)
    #: What the event is about, e.g. "apv:12", "decision:7", "wargame:3",
    #: "apv:12:until:2025-01-31T00:00:00+00:00", "sandbox:20250101T120000".
    subject_key = models.CharField(max_length=200)
    apv = models.ForeignKey("reviews.APV", null=True, blank=True, on_delete=models.SET_NULL,
                            related_name="+")
    project = models.ForeignKey("inventory.Project", null=True, blank=True,
                                on_delete=models.SET_NULL, related_name="+")
    title = models.CharField(max_length=300)
    #: The event's fields as they were when it was detected: every retry sends the same.
    payload = models.JSONField(default=dict)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["event", "subject_key"],
                                    name="uniq_notification_event_subject"),
        ]

    def __str__(self) -> str:
        return self.title


class Delivery(TimeStampedModel):
    """One notification to one target on one channel, and how sending it went.

    ``target`` is an email address, or for a webhook ``<host>#<sha256 prefix of the URL>``:
    webhook URLs often carry a token, so the URL itself is never stored."""

    notification = models.ForeignKey(Notification, on_delete=models.PROTECT,
                                     related_name="deliveries")
    channel = models.CharField(max_length=10, choices=Channel.choices)
    target = models.CharField(max_length=320)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                             on_delete=models.SET_NULL, related_name="+")
    outcome = models.CharField(max_length=10, choices=Outcome.choices,
                               default=Outcome.PENDING, db_index=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    #: When a send task was enqueued for it (the per-pass cap leaves some for later).
    queued_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(fields=["notification", "channel", "target"],
                                    name="uniq_delivery_per_target"),
        ]
        indexes = [models.Index(fields=["channel", "outcome"])]

    def __str__(self) -> str:
        return f"{self.channel} → {self.target}: {self.outcome}"


class DetectorState(models.Model):
    """When detection last ran, and the sandbox outage it has announced (if any)."""

    name = models.CharField(max_length=50, unique=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    sandbox_down_since = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.name
