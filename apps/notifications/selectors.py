"""Reads: the other apps' rows that are events, and who wants to hear of them.

Every candidate query leaves out what already has a notification (a NOT EXISTS on the
unique (event, subject_key) index), so a pass touches only what is new, and is capped
at ``DETECT_BATCH`` rows per event: the rest is found by the next pass.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import islice

from django.conf import settings
from django.core.exceptions import FieldDoesNotExist
from django.db import connection
from django.db.models import (
    CharField,
    DateTimeField,
    DurationField,
    Exists,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    QuerySet,
    Value,
)
from django.db.models.functions import Cast, Concat

from apps.advisories.models import Advisory, Severity
from apps.decisions.models import Decision, DecisionType
from apps.notifications.models import Event, Notification, Subscription
from apps.reviews.metrics import SLA_STOPPED
from apps.reviews.models import APV, APVStatus
from apps.wargaming.models import RunState, Verdict, WargameRun

#: Candidates per event per detection pass.
DETECT_BATCH = 500
#: Advisory fields that would mark CISA KEV listing. The advisories app has none today;
#: when one lands under one of these names (a boolean), KEV-listed APVs are announced
#: whatever their severity (docs/notifications.md).
KEV_FIELDS = ("kev", "is_kev", "kev_listed", "known_exploited")

_APV_RELATED = ("project", "dependency", "advisory")


def kev_field() -> str | None:
    for name in KEV_FIELDS:
        try:
            Advisory._meta.get_field(name)
        except FieldDoesNotExist:
            continue
        return name
    return None


def _not_notified(event: str, prefix: str) -> Exists:
    key = Concat(Value(prefix), Cast(OuterRef("pk"), output_field=CharField()),
                 output_field=CharField())
    return ~Exists(Notification.objects.filter(event=event, subject_key=key))


def _open_apvs() -> QuerySet[APV]:
    return APV.objects.exclude(status__in=SLA_STOPPED)


def apvs_new(*, since: datetime) -> QuerySet[APV]:
    """APVs raised since ``since`` that are critical, high or (when advisories know it)
    KEV-listed, and still open."""
    urgent = Q(severity__in=[Severity.CRITICAL, Severity.HIGH])
    if (kev := kev_field()) is not None:
        urgent |= Q(**{f"advisory__{kev}": True})
    return (_open_apvs().filter(urgent, created_at__gte=since)
            .filter(_not_notified(Event.APV_NEW, "apv:"))
            .select_related(*_APV_RELATED).order_by("created_at")[:DETECT_BATCH])


def apvs_sla_warning(*, now: datetime) -> list[APV]:
    """Open APVs that used NOTIFY_SLA_WARN_PERCENT of their window (first seen → SLA due)
    and have not breached it yet."""
    share = settings.NOTIFY_SLA_WARN_PERCENT / 100
    qs = (_open_apvs().filter(sla_due_at__gt=now, first_seen_at__lte=now)
          .filter(_not_notified(Event.SLA_WARNING, "apv:"))
          .select_related(*_APV_RELATED).order_by("sla_due_at"))
    if connection.vendor == "postgresql":
        warn_at = ExpressionWrapper(
            F("first_seen_at") + ExpressionWrapper(
                (F("sla_due_at") - F("first_seen_at")) * Value(share),
                output_field=DurationField()),
            output_field=DateTimeField())
        return list(qs.alias(warn_at=warn_at).filter(warn_at__lte=now)[:DETECT_BATCH])
    # SQLite cannot scale an interval: the share is computed here (the embedded default
    # holds a single deployment's APVs).
    due = (apv for apv in qs.iterator(chunk_size=2000)
           if apv.first_seen_at + (apv.sla_due_at - apv.first_seen_at) * share <= now)
    return list(islice(due, DETECT_BATCH))


def apvs_sla_breached(*, now: datetime) -> QuerySet[APV]:
    return (_open_apvs().filter(sla_due_at__lte=now)
            .filter(_not_notified(Event.SLA_BREACHED, "apv:"))
            .select_related(*_APV_RELATED).order_by("sla_due_at")[:DETECT_BATCH])


def runs_ineffective(*, since: datetime) -> QuerySet[WargameRun]:
    """Finished runs of a proposed patch whose verdict is patch_ineffective (ad-hoc runs
    of ``manage.py wargame --package`` belong to no project and are not announced)."""
    return (WargameRun.objects.filter(state=RunState.FINISHED,
                                      verdict=Verdict.PATCH_INEFFECTIVE,
                                      patch__isnull=False, finished_at__gte=since)
            .filter(_not_notified(Event.PATCH_INEFFECTIVE, "wargame:"))
            .select_related("patch", "patch__project").prefetch_related("patch__apvs")
            .order_by("finished_at")[:DETECT_BATCH])


def escalations(*, since: datetime) -> QuerySet[Decision]:
    """Escalate decisions that took effect (the APV went to the leads)."""
    return (Decision.objects.filter(decision=DecisionType.ESCALATE,
                                    status_after=APVStatus.ESCALATED, decided_at__gte=since)
            .filter(_not_notified(Event.ESCALATION, "decision:"))
            .select_related("apv", "apv__project", "apv__dependency", "apv__advisory",
                            "reviewer")
            .order_by("decided_at")[:DETECT_BATCH])


def risk_acceptances_expiring(*, now: datetime) -> QuerySet[APV]:
    """Accepted risks that expire within NOTIFY_RISK_EXPIRY_DAYS (and have not yet: the
    decisions app's beat task puts expired ones back in review)."""
    horizon = now + timedelta(days=settings.NOTIFY_RISK_EXPIRY_DAYS)
    return (APV.objects.filter(status=APVStatus.RISK_ACCEPTED,
                               risk_accepted_until__gt=now, risk_accepted_until__lte=horizon)
            .select_related(*_APV_RELATED).order_by("risk_accepted_until")[:DETECT_BATCH])


def notified_keys(*, event: str, keys: list[str]) -> set[str]:
    return set(Notification.objects.filter(event=event, subject_key__in=keys)
               .values_list("subject_key", flat=True))


def subscription_list(*, active: bool = True) -> QuerySet[Subscription]:
    return (Subscription.objects.filter(active=active, user__is_active=True)
            .select_related("user", "project").order_by("pk"))
