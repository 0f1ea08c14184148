"""Writes of the notifications app: detect events, record one notification per event and
subject with its deliveries (one transaction), enqueue the sends after commit, send.

Exactly once per event and subject: ``Notification`` has a unique (event, subject_key)
constraint and is created with ``get_or_create`` in a transaction; only the pass that
created it creates its deliveries, so two detection passes racing each other record, and
send, one message (docs/notifications.md, "Exactly once").
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.core.health import Degraded
from apps.core.queue import enqueue_on_commit
from apps.notifications import selectors
from apps.notifications.channels import (
    email_send,
    webhook_host,
    webhook_post,
    webhook_targets,
)
from apps.notifications.errors import DeliveryError, TargetGone
from apps.notifications.messages import apv_fields, compose
from apps.notifications.models import (
    Channel,
    Delivery,
    DetectorState,
    Event,
    Notification,
    Outcome,
    Subscription,
)
from apps.wargaming.sandbox import SandboxUnavailable

log = structlog.get_logger(__name__)

DETECTOR = "detect"


@dataclass
class DetectionResult:
    created: Counter = field(default_factory=Counter)
    deliveries: int = 0
    enqueued: int = 0

    def as_dict(self) -> dict:
        return {"created": dict(self.created), "deliveries": self.deliveries,
                "enqueued": self.enqueued}


# --- Recording ------------------------------------------------------------------------------

def _webhook_events() -> set[str] | None:
    """Events the operator's webhooks get by themselves; None: every event."""
    wanted = {e.strip() for e in settings.NOTIFY_WEBHOOK_EVENTS if e.strip()}
    if "all" in wanted:
        return None
    return wanted - {"none"}


def _targets(notification: Notification,
             subscriptions: list[Subscription]) -> list[Delivery]:
    """Email: every active subscription wanting the event and project, once per address.
    Webhooks: every configured URL, when NOTIFY_WEBHOOK_EVENTS lets the event through or
    a subscription wanting it chose the webhook channel."""
    event, project_id = notification.event, notification.project_id
    wanting = [s for s in subscriptions if s.wants(event=event, project_id=project_id)]
    rows: dict[tuple[str, str], Delivery] = {}
    for sub in wanting:
        if Channel.EMAIL in sub.channels and sub.user.email:
            rows.setdefault((Channel.EMAIL, sub.user.email.lower()), Delivery(
                notification=notification, channel=Channel.EMAIL,
                target=sub.user.email.lower(), user=sub.user))
    webhook_events = _webhook_events()
    if (webhook_events is None or event in webhook_events
            or any(Channel.WEBHOOK in s.channels for s in wanting)):
        for target in webhook_targets():
            rows.setdefault((Channel.WEBHOOK, target), Delivery(
                notification=notification, channel=Channel.WEBHOOK, target=target))
    return list(rows.values())


def notification_record(*, event: str, subject_key: str, fields: dict, apv=None,
                        project=None, subscriptions: list[Subscription] | None = None
                        ) -> tuple[Notification, bool]:
    """The notification of ``event`` about ``subject_key``, created with its deliveries
    unless it exists; (notification, created)."""
    title, payload = compose(event, fields)
    if subscriptions is None:
        subscriptions = list(selectors.subscription_list())
    with transaction.atomic():
        notification, created = Notification.objects.get_or_create(
            event=event, subject_key=subject_key,
            defaults={"apv": apv, "project": project, "title": title, "payload": payload})
        if created:
            Delivery.objects.bulk_create(_targets(notification, subscriptions))
            log.info("notification.recorded", notification_event=event, subject=subject_key,
                     notification_id=notification.pk)
    return notification, created


# --- Detection ------------------------------------------------------------------------------

def _sandbox_unavailable() -> str | None:
    """Why the wargame sandbox is unavailable (what workers report, see
    apps/wargaming/health.py), or None when it is there (degraded counts as there)."""
    from apps.wargaming.health import health_check

    try:
        health_check()
    except SandboxUnavailable as exc:
        return str(exc)[:500]
    except Degraded:
        return None
    except Exception as exc:  # noqa: BLE001 (an unknown state is not an outage)
        log.warning("notifications.sandbox_check_failed", error=type(exc).__name__)
    return None


def _sandbox_outage_start(*, now: datetime, detail: str | None) -> datetime | None:
    """The start of the current sandbox outage, kept on the detector's row (locked, so
    racing passes agree on it); None when the sandbox is available."""
    DetectorState.objects.get_or_create(name=DETECTOR)
    with transaction.atomic():
        state = DetectorState.objects.select_for_update().get(name=DETECTOR)
        if detail is None:
            if state.sandbox_down_since is not None:
                state.sandbox_down_since = None
                state.save(update_fields=["sandbox_down_since"])
                log.info("notifications.sandbox_recovered")
            return None
        if state.sandbox_down_since is None:
            state.sandbox_down_since = now
            state.save(update_fields=["sandbox_down_since"])
        return state.sandbox_down_since


def _detect_since(now: datetime) -> datetime:
    state, _ = DetectorState.objects.get_or_create(name=DETECTOR)
    overlap = timedelta(minutes=settings.NOTIFY_DETECT_OVERLAP_MINUTES)
    last = state.last_run_at if state.last_run_at and state.last_run_at < now else now
    return last - overlap


def notifications_detect(*, now: datetime | None = None) -> DetectionResult:
    """One detection pass (beat, every minute): record what happened since the last pass
    (less NOTIFY_DETECT_OVERLAP_MINUTES) and what is true now, then enqueue sends."""
    now = now or timezone.now()
    since = _detect_since(now)
    subscriptions = list(selectors.subscription_list())
    result = DetectionResult()

    def record(event: str, subject_key: str, fields: dict, *, apv=None, project=None):
        notification, created = notification_record(
            event=event, subject_key=subject_key, fields=fields, apv=apv, project=project,
            subscriptions=subscriptions)
        if created:
            result.created[event] += 1
            result.deliveries += notification.deliveries.count()

    kev = selectors.kev_field()
    for apv in selectors.apvs_new(since=since):
        fields = apv_fields(apv)
        if kev:
            fields["kev"] = bool(getattr(apv.advisory, kev, False))
        record(Event.APV_NEW, f"apv:{apv.pk}", fields, apv=apv, project=apv.project)
    for apv in selectors.apvs_sla_warning(now=now):
        fields = {**apv_fields(apv), "sla_percent": settings.NOTIFY_SLA_WARN_PERCENT}
        record(Event.SLA_WARNING, f"apv:{apv.pk}", fields, apv=apv, project=apv.project)
    for apv in selectors.apvs_sla_breached(now=now):
        record(Event.SLA_BREACHED, f"apv:{apv.pk}", apv_fields(apv), apv=apv,
               project=apv.project)
    for run in selectors.runs_ineffective(since=since):
        patch = run.patch
        apvs = sorted(patch.apvs.all(), key=lambda a: a.code)
        fields = {"wargame_run": run.pk, "patch": str(patch), "patch_revision":
                  run.patch_revision, "project": patch.project.name,
                  "apvs": [a.code for a in apvs], "exploit": run.exploit,
                  "reason": run.reason[:500], "confidence": run.confidence,
                  "finished_at": run.finished_at.isoformat() if run.finished_at else None}
        record(Event.PATCH_INEFFECTIVE, f"wargame:{run.pk}", fields,
               apv=apvs[0] if apvs else None, project=patch.project)
    for decision in selectors.escalations(since=since):
        apv = decision.apv
        fields = {**apv_fields(apv), "decision_id": decision.pk,
                  "reviewer": decision.reviewer.get_username(),
                  "justification": decision.justification[:500],
                  "decided_at": decision.decided_at.isoformat()}
        record(Event.ESCALATION, f"decision:{decision.pk}", fields, apv=apv,
               project=apv.project)
    expiring = list(selectors.risk_acceptances_expiring(now=now))
    # A renewed acceptance (a new expiry) is a new subject: it is announced again.
    keys = {apv.pk: f"apv:{apv.pk}:until:{apv.risk_accepted_until.isoformat()}"
            for apv in expiring}
    done = selectors.notified_keys(event=Event.RISK_EXPIRING, keys=list(keys.values()))
    for apv in expiring:
        if keys[apv.pk] not in done:
            fields = {**apv_fields(apv),
                      "risk_accepted_until": apv.risk_accepted_until.isoformat()}
            record(Event.RISK_EXPIRING, keys[apv.pk], fields, apv=apv, project=apv.project)
    detail = _sandbox_unavailable()
    if (down_since := _sandbox_outage_start(now=now, detail=detail)) is not None:
        # One message per outage: the key is when this detector first saw it down.
        record(Event.SANDBOX_UNAVAILABLE, f"sandbox:{down_since:%Y%m%dT%H%M%S.%f}",
               {"detail": detail, "since": down_since.isoformat()})

    DetectorState.objects.filter(name=DETECTOR).update(last_run_at=now)
    result.enqueued = deliveries_dispatch(now=now)
    if result.created or result.enqueued:
        log.info("notifications.detected", **result.as_dict())
    return result


# --- Sending --------------------------------------------------------------------------------

def deliveries_dispatch(*, now: datetime | None = None) -> int:
    """Enqueue the send of pending deliveries, at most NOTIFY_MAX_SENDS_PER_PASS per channel
    (the rest wait for the next pass), including those whose task was lost (enqueued more
    than NOTIFY_REQUEUE_AFTER_S ago and still pending). Rows are claimed with SKIP LOCKED:
    racing passes enqueue disjoint sets."""
    from apps.notifications.tasks import deliver

    now = now or timezone.now()
    stale = now - timedelta(seconds=settings.NOTIFY_REQUEUE_AFTER_S)
    enqueued = 0
    for channel in Channel.values:
        with transaction.atomic():
            ids = list(Delivery.objects.select_for_update(skip_locked=True)
                       .filter(channel=channel, outcome=Outcome.PENDING)
                       .filter(Q(queued_at__isnull=True) | Q(queued_at__lt=stale))
                       .order_by("pk").values_list("pk", flat=True)
                       [:settings.NOTIFY_MAX_SENDS_PER_PASS])
            if not ids:
                continue
            Delivery.objects.filter(pk__in=ids).update(queued_at=now, updated_at=now)
            for pk in ids:
                enqueue_on_commit(deliver, pk)
            enqueued += len(ids)
    return enqueued


def _send(delivery: Delivery) -> str:
    """Send one delivery; the host it went to (for the log)."""
    payload = delivery.notification.payload
    if delivery.channel == Channel.WEBHOOK:
        body = {**payload, "notification_id": delivery.notification_id,
                "delivery_id": delivery.pk}
        webhook_post(target=delivery.target, body=body, delivery_id=delivery.pk)
        return webhook_host(delivery.target)
    email_send(to=delivery.target, subject=delivery.notification.title,
               body=payload.get("text", delivery.notification.title), delivery_id=delivery.pk)
    return settings.EMAIL_HOST


def delivery_send(*, delivery_id: int, final_attempt: bool) -> str:
    """Send a pending delivery once and record the attempt; its outcome.

    The row stays locked while sending, so a duplicate task waits and then finds it sent.
    A failure raises ``DeliveryError`` after the attempt is recorded, unless this was the
    final attempt: then the delivery is ``failed``. A target no longer configured fails at
    once (no retry can help)."""
    error: DeliveryError | None = None
    with transaction.atomic():
        delivery = (Delivery.objects.select_for_update(of=("self",))
                    .select_related("notification").filter(pk=delivery_id).first())
        if delivery is None or delivery.outcome != Outcome.PENDING:
            return delivery.outcome if delivery else "missing"
        delivery.attempts += 1
        host = webhook_host(delivery.target) if delivery.channel == Channel.WEBHOOK else ""
        try:
            host = _send(delivery)
        except TargetGone as exc:
            delivery.outcome, delivery.last_error = Outcome.FAILED, str(exc)
        except DeliveryError as exc:
            delivery.last_error = str(exc)
            if final_attempt:
                delivery.outcome = Outcome.FAILED
            else:
                error = exc
        else:
            delivery.outcome, delivery.sent_at = Outcome.SENT, timezone.now()
        delivery.save(update_fields=["attempts", "outcome", "last_error", "sent_at",
                                     "updated_at"])
    logged = {"delivery_id": delivery.pk, "channel": delivery.channel, "host": host,
              "attempt": delivery.attempts, "event": delivery.notification.event}
    if delivery.outcome == Outcome.SENT:
        log.info("notification.sent", **_rename(logged))
    else:
        log.warning("notification.send_failed", error=delivery.last_error,
                    final=delivery.outcome == Outcome.FAILED, **_rename(logged))
    if error is not None:
        raise error
    return delivery.outcome


def _rename(fields: dict) -> dict:
    # "event" is structlog's message key.
    return {("notification_event" if k == "event" else k): v for k, v in fields.items()}
