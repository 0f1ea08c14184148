"""Reads on decisions: the filtered list, an APV's history, and review statistics."""

from __future__ import annotations

import statistics
from datetime import datetime

from django.db.models import Count, OuterRef, QuerySet, Subquery

from apps.decisions.models import Decision


def decision_list(
    *, reviewer: str = "", decision: str = "", project: str = "", apv_code: str = "",
    since: datetime | None = None, until: datetime | None = None,
) -> QuerySet[Decision]:
    qs = (Decision.objects.select_related("apv", "apv__project", "reviewer", "patch", "audit")
          .prefetch_related("also_applied_to"))
    if reviewer:
        qs = qs.filter(reviewer__username__in=reviewer.split(","))
    if decision:
        qs = qs.filter(decision__in=decision.split(","))
    if project:
        qs = qs.filter(apv__project__name__in=project.split(","))
    if apv_code:
        qs = qs.filter(apv__code=apv_code)
    if since:
        qs = qs.filter(decided_at__gte=since)
    if until:
        qs = qs.filter(decided_at__lt=until)
    return qs.order_by("-decided_at")


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
