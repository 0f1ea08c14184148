"""APV priority (0–10, higher is more urgent) and SLA due date; documented in docs/apv.md."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from django.conf import settings

#: Stand-in for the CVSS base score when an advisory has no vector.
SEVERITY_BASE_SCORE = {
    "critical": 9.0, "high": 7.0, "medium": 5.0, "low": 3.0, "none": 0.0, "unknown": 5.0,
}


def apv_priority(
    *, cvss_score: float | None, severity: str, direct: bool, fix_available: bool
) -> int:
    """CVSS base score, +1 for a direct dependency (−1 transitive), +0.5 when a fixed
    version exists (−0.5 when none does), rounded half up and clamped to 0–10."""
    base = cvss_score if cvss_score is not None else SEVERITY_BASE_SCORE.get(severity, 5.0)
    score = base + (1.0 if direct else -1.0) + (0.5 if fix_available else -0.5)
    return int(max(0, min(10, math.floor(score + 0.5))))


def sla_due(*, severity: str, first_seen: datetime) -> datetime:
    days = settings.APV_SLA_DAYS.get(severity, settings.APV_SLA_DAYS["medium"])
    return first_seen + timedelta(days=days)
