"""The numbers behind the admin index dashboard: the state of the review work at a glance.

``dashboard_data`` runs a constant number of queries, whatever the number of APVs
and decisions: counts are aggregated in the database; only the median time to decision is
computed here, over the ``review_seconds`` of the decisions in the window.
"""

from __future__ import annotations

import statistics
from datetime import UTC, date, datetime, time, timedelta

from django.db.models import Count, Q
from django.db.models.functions import TruncDate
from django.utils import timezone

from apps.advisories.models import Severity
from apps.decisions.models import Decision, DecisionType
from apps.reviews.models import APV, APVStatus

#: Most severe first: the order of every per-severity breakdown (a severity the database
#: holds but this list lacks is counted as unknown).
SEVERITY_ORDER: list[str] = [s.value for s in (Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM,
                                                Severity.LOW, Severity.NONE, Severity.UNKNOWN)]

#: Waiting for a reviewer (reviewers or leads).
PENDING_STATUSES: list[str] = [APVStatus.PENDING_REVIEW.value, APVStatus.ESCALATED.value]

#: Work not finished yet: the SLA still runs. Everything else (applied, rejected, resolved,
#: risk accepted, false positive) is closed, whatever its ``sla_due_at``.
OPEN_WORK_STATUSES: list[str] = [s.value for s in (
    APVStatus.OPEN, APVStatus.PATCH_PROPOSED, APVStatus.VALIDATING, APVStatus.PENDING_REVIEW,
    APVStatus.ESCALATED, APVStatus.CHANGES_REQUESTED, APVStatus.APPROVED,
)]


def _median(values: list[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def _window(now: datetime, days: int) -> tuple[list[date], datetime, datetime]:
    """The last ``days`` UTC dates ending today, and the datetimes bounding them."""
    today = now.astimezone(UTC).date()
    dates = [today - timedelta(days=offset) for offset in range(days - 1, -1, -1)]
    start = datetime.combine(dates[0], time.min, tzinfo=UTC)
    end = datetime.combine(today + timedelta(days=1), time.min, tzinfo=UTC)
    return dates, start, end


def _apv_counts(now: datetime) -> tuple[dict[str, int], dict[str, int]]:
    """Pending work and past-SLA work per severity, in one query."""
    rows = (
        APV.objects.filter(status__in=OPEN_WORK_STATUSES)
        .order_by()
        .values("severity")
        .annotate(
            pending=Count("id", filter=Q(status__in=PENDING_STATUSES)),
            overdue=Count("id", filter=Q(sla_due_at__lt=now)),
        )
    )
    pending = dict.fromkeys(SEVERITY_ORDER, 0)
    overdue = dict.fromkeys(SEVERITY_ORDER, 0)
    for row in rows:
        severity = row["severity"] if row["severity"] in pending else "unknown"
        pending[severity] += row["pending"]
        overdue[severity] += row["overdue"]
    return pending, overdue


def _decisions(dates: list[date], start: datetime, end: datetime) -> tuple[list[dict], list]:
    """Decisions per day split by type (one query) and review times per day (one query)."""
    window = (Decision.objects.filter(decided_at__gte=start, decided_at__lt=end)
              .order_by().annotate(day=TruncDate("decided_at", tzinfo=UTC)))
    counts = {(row["day"], row["decision"]): row["n"]
              for row in window.values("day", "decision").annotate(n=Count("id"))}
    seconds_by_day: dict[date, list[float]] = {day: [] for day in dates}
    for day, seconds in window.filter(review_seconds__isnull=False).values_list(
            "day", "review_seconds"):
        if day in seconds_by_day:
            seconds_by_day[day].append(seconds)
    per_day = []
    for day in dates:
        by_type = {t: counts.get((day, t), 0) for t in DecisionType.values}
        per_day.append({"date": day, "total": sum(by_type.values()), "by_type": by_type,
                        "median_seconds": _median(seconds_by_day[day])})
    all_seconds = [s for day in dates for s in seconds_by_day[day]]
    return per_day, all_seconds


def dashboard_data(*, now: datetime | None = None, days: int = 14) -> dict:
    """Everything the admin dashboard draws; see the module docstring for the query budget.

    ``decisions_per_day`` has one entry per UTC date, oldest first, today last, zero-filled.
    ``median_seconds`` (overall and per day) is ``None`` where no decision has a review time.
    """
    if days < 1:
        raise ValueError("days must be at least 1")
    now = now or timezone.now()
    pending, overdue = _apv_counts(now)
    dates, start, end = _window(now, days)
    per_day, seconds = _decisions(dates, start, end)
    return {
        "now": now,
        "days": days,
        "severities": list(SEVERITY_ORDER),
        "pending_by_severity": pending,
        "pending_total": sum(pending.values()),
        "past_sla": {"total": sum(overdue.values()), "by_severity": overdue},
        "decision_types": list(DecisionType.values),
        "decisions_per_day": per_day,
        "decisions_total": sum(day["total"] for day in per_day),
        "median_seconds": _median(seconds),
        "median_count": len(seconds),
        # None means "nothing yet" to the template.
        "wargame_verdicts": _wargame_verdicts(),
        "model_accuracy": _model_accuracy(),
    }


def _wargame_verdicts() -> dict[str, int] | None:
    """Finished runs per verdict (one query)."""
    from apps.wargaming.models import RunState, WargameRun

    rows = (WargameRun.objects.filter(state=RunState.FINISHED).order_by().values("verdict")
            .annotate(n=Count("id")))
    counts = {row["verdict"]: row["n"] for row in rows}
    return counts or None


def _model_accuracy() -> dict | None:
    """The active model's cross-validated accuracy and the A/B accuracy (cached report)."""
    from apps.ab_testing.selectors import accuracy_report
    from apps.ml.models import ModelVersion

    model = (ModelVersion.objects.filter(is_active=True)
             .only("version", "algorithm", "cv_accuracy", "training_size").first())
    if model is None:
        return None
    report = accuracy_report()
    return {"version": model.version, "algorithm": model.algorithm,
            "cv_accuracy": model.cv_accuracy, "training_size": model.training_size,
            "ab_accuracy": report["accuracy"], "ab_ci95": report["accuracy_ci95"],
            "ab_sample_size": report["sample_size"]}
