"""Reads on decisions: the filtered list, an APV's history, and review statistics."""

from __future__ import annotations

import statistics
from datetime import datetime

from django.db.models import Count, OuterRef, Q, QuerySet, Subquery

from apps.decisions.models import Decision, DecisionAudit
from apps.inventory.selectors import project_q


def _values(value: str | list[str]) -> list[str]:
    return [v for v in value.split(",") if v] if isinstance(value, str) else list(value)


def decision_list(
    *, reviewer: str | list[str] = "", decision: str | list[str] = "",
    project: str | list[str] = "", apv_code: str = "", apv: str | list[str] = "",
    outcome: str | list[str] = "", since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[Decision]:
    """Decisions, newest first. ``apv_code``: decisions made on that APV only; ``apv``:
    those that moved these APVs, made on them or on a sibling sharing the patch revision
    (``also_applied_to``): an APV's whole history."""
    qs = (Decision.objects.select_related("apv", "apv__project", "reviewer", "patch", "audit")
          .prefetch_related("also_applied_to"))
    if reviewer:
        qs = qs.filter(reviewer__username__in=_values(reviewer))
    if decision:
        qs = qs.filter(decision__in=_values(decision))
    if outcome:
        qs = qs.filter(outcome__in=_values(outcome))
    if project:
        qs = qs.filter(project_q(_values(project), field="apv__project"))
    if apv_code:
        qs = qs.filter(apv__code=apv_code)
    if apv:
        codes = _values(apv)
        via_patch = Decision.also_applied_to.through.objects.filter(
            apv__code__in=codes).values("decision_id")
        qs = qs.filter(Q(apv__code__in=codes) | Q(pk__in=via_patch))
    if since:
        qs = qs.filter(decided_at__gte=since)
    if until:
        qs = qs.filter(decided_at__lt=until)
    return qs.order_by("-decided_at", "-id")


def audit_list(*, decision: int | None = None, apv: str | list[str] = "",
               reviewer: str | list[str] = "", via: str | list[str] = "",
               since: datetime | None = None,
               until: datetime | None = None) -> QuerySet[DecisionAudit]:
    """Audit records, newest first; ``apv`` as in ``decision_list`` (siblings included)."""
    qs = DecisionAudit.objects.select_related("decision", "decision__apv")
    if decision is not None:
        qs = qs.filter(decision_id=decision)
    if apv:
        qs = qs.filter(decision__in=decision_list(apv=apv).prefetch_related(None).values("pk"))
    if reviewer:
        qs = qs.filter(reviewer_username__in=_values(reviewer))
    if via:
        qs = qs.filter(via__in=_values(via))
    if since:
        qs = qs.filter(recorded_at__gte=since)
    if until:
        qs = qs.filter(recorded_at__lt=until)
    return qs.order_by("-recorded_at", "-id")


def decision_stats(*, project: str = "") -> dict:
    qs = decision_list(project=project)
    by_type = dict(qs.order_by().values_list("decision").annotate(n=Count("id")))
    seconds = [s for s in qs.values_list("review_seconds", flat=True) if s is not None]
    times = None
    if seconds:
        times = {"mean": round(statistics.fmean(seconds), 1),
                 "median": round(statistics.median(seconds), 1),
                 "fastest": round(min(seconds), 1), "slowest": round(max(seconds), 1),
                 "count": len(seconds)}
    return {"decisions_by_type": by_type, "review_time_seconds": times}


def with_reviewer_decision(*, qs: QuerySet) -> QuerySet:
    """A/B testing's pairs (ABTestResult) with the latest decision on each pair's patch
    revision and who made it (subscribed to ``ab_testing.hooks.reviewer_decisions``)."""
    decision = Decision.objects.filter(
        patch_id=OuterRef("prediction__patch_id"),
        patch_revision=OuterRef("prediction__patch_revision")).order_by("-decided_at")
    return qs.annotate(reviewer_decision=Subquery(decision.values("decision")[:1]),
                       reviewer=Subquery(decision.values("reviewer__username")[:1]))
