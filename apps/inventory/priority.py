"""Priority (0–10, higher is more urgent) and SLA due date of an exposure: an advisory met by
a dependency. Reviews ranks its APVs with it, the ad hoc scan its findings; docs/apv.md."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from django.conf import settings

#: Stand-in for the CVSS base score when an advisory has no vector.
SEVERITY_BASE_SCORE = {
    "critical": 9.0, "high": 7.0, "medium": 5.0, "low": 3.0, "none": 0.0, "unknown": 5.0,
}
#: Priority of an APV whose advisory is in CISA's KEV catalog: exploited in the wild.
KEV_PRIORITY = 10
#: EPSS percentile bands and the points they add (docs/apv.md): the top 5% of CVEs most
#: likely to be exploited in the next 30 days +2, the top 20% +1. Percentile rather than
#: the raw probability: it says how this CVE ranks against every other, which is what a
#: queue ordering needs; the raw probability is shown beside it.
EPSS_BONUS = ((0.95, 2.0), (0.80, 1.0))


def epss_bonus(percentile: float | None) -> float:
    if percentile is None:
        return 0.0
    return next((points for floor, points in EPSS_BONUS if percentile >= floor), 0.0)


def apv_priority(
    *, cvss_score: float | None, severity: str, direct: bool, fix_available: bool,
    epss_percentile: float | None = None, kev_listed: bool = False,
) -> int:
    """KEV-listed: 10. Otherwise the CVSS base score (or a stand-in by severity), +1 for a
    direct dependency (−1 transitive), +0.5 when a fixed version exists (−0.5 when none
    does), + the EPSS bonus, rounded half up and clamped to 0–10."""
    if kev_listed:
        return KEV_PRIORITY
    base = cvss_score if cvss_score is not None else SEVERITY_BASE_SCORE.get(severity, 5.0)
    score = (base + (1.0 if direct else -1.0) + (0.5 if fix_available else -0.5)
             + epss_bonus(epss_percentile))
    return int(max(0, min(10, math.floor(score + 0.5))))


def sla_days(*, severity: str, kev_listed: bool = False) -> int:
    """Days from first seen to due: by severity; a KEV-listed advisory gets the shortest
    window configured (critical's by default), whatever its severity."""
    days = settings.APV_SLA_DAYS
    if kev_listed:
        return min(days.values())
    return days.get(severity, days["medium"])


def sla_due(*, severity: str, first_seen: datetime, kev_listed: bool = False) -> datetime:
    return first_seen + timedelta(days=sla_days(severity=severity, kev_listed=kev_listed))
