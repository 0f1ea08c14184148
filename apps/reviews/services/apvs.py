"""Writes on APVs: raised and refreshed by scans, resolved when the exposure goes away."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

import structlog
from django.db import connection, transaction
from django.utils import timezone

from apps.advisories.models import Advisory
from apps.core.queue import enqueue_on_commit
from apps.core.realtime import send_event, send_event_on_commit
from apps.inventory.hooks import Exposure
from apps.inventory.models import Dependency, Project
from apps.inventory.priority import apv_priority, sla_due
from apps.reviews.models import APV, APVCodeCounter, APVStatus

log = structlog.get_logger(__name__)


@dataclass
class SyncResult:
    created: list[APV]
    updated: list[APV]
    unchanged: list[APV]
    resolved: list[APV]

    @property
    def current(self) -> list[APV]:
        return [*self.created, *self.updated, *self.unchanged]


def apv_codes_allocate(*, day: date, count: int) -> list[str]:
    """``count`` new codes ``APV-YYYYMMDD-NNNN``, unique even under concurrent scans.

    One atomic statement increments the day's counter (INSERT … ON CONFLICT … RETURNING,
    PostgreSQL and SQLite ≥ 3.35), so two scans never receive the same numbers.
    """
    if count <= 0:
        return []
    table = connection.ops.quote_name(APVCodeCounter._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (day, last) VALUES (%s, %s) "  # noqa: S608 (table name is ours)
            f"ON CONFLICT (day) DO UPDATE SET last = {table}.last + EXCLUDED.last "
            "RETURNING last",
            [day, count],
        )
        last = cursor.fetchone()[0]
    stamp = day.strftime("%Y%m%d")
    return [f"APV-{stamp}-{n:04d}" for n in range(last - count + 1, last + 1)]


def apv_payload(apv: APV) -> dict:
    """What a live client needs to redraw a row of the queue (``apv.created``,
    ``apv.updated``): the APV's code under ``apv``, as in every event (docs/api.md)."""
    return {
        "apv": apv.code,
        "project": apv.project.name,
        "package": apv.dependency.name,
        "version": apv.dependency.version,
        "advisory": apv.advisory.osv_id,
        "severity": apv.severity,
        "priority": apv.priority,
        "status": apv.status,
        "sla_due_at": apv.sla_due_at,
    }


#: Fields a rescan may change; a change in any of them (not just last_seen) is an update.
_REFRESHED = ("severity", "cvss_score", "priority", "fixed_in", "sla_due_at", "status")


def stats_push_on_commit() -> None:
    """After commit, push the queue counters (computed then, so they include this write)."""
    from apps.reviews.selectors import queue_counts

    transaction.on_commit(lambda: send_event("stats", "stats.update", queue_counts()))


def _refresh(apv: APV, exposure: Exposure, now: datetime) -> bool:
    advisory, dependency = exposure.advisory, exposure.dependency
    before = {name: getattr(apv, name) for name in _REFRESHED}
    apv.severity = advisory.severity
    apv.cvss_score = advisory.cvss_score
    apv.fixed_in = list(exposure.fixed_in)
    _rank(apv, advisory, direct=dependency.direct, fix_available=bool(exposure.fixed_in))
    if apv.status == APVStatus.RESOLVED:
        # Found again after it went away (a pin reverted): the exposure is back.
        apv.status, apv.resolved_at, apv.resolution = APVStatus.OPEN, None, ""
    apv.last_seen_at = apv.updated_at = now  # bulk_update does not apply auto_now
    return any(getattr(apv, name) != value for name, value in before.items())


def _rank(apv: APV, advisory: Advisory, *, direct: bool, fix_available: bool) -> None:
    """Priority and SLA from the advisory's severity and exploitation evidence."""
    apv.priority = apv_priority(
        cvss_score=advisory.cvss_score, severity=advisory.severity, direct=direct,
        fix_available=fix_available, epss_percentile=advisory.epss_percentile,
        kev_listed=advisory.kev_listed,
    )
    apv.sla_due_at = sla_due(severity=advisory.severity, first_seen=apv.first_seen_at,
                             kev_listed=advisory.kev_listed)


@transaction.atomic
def apvs_sync_for_project(*, project: Project, exposures: Iterable[Exposure]) -> SyncResult:
    """Make the project's APVs match what a scan found: one per (dependency, advisory)."""
    now = timezone.now()
    # Serialise scans of one project: a row lock on PostgreSQL, the write lock on SQLite.
    Project.objects.select_for_update().filter(pk=project.pk).exists()
    existing = {
        (apv.dependency_id, apv.advisory_id): apv
        for apv in APV.objects.filter(project=project).select_related(
            "project", "dependency", "advisory"
        )
    }
    result = SyncResult([], [], [], [])
    new: list[tuple[Exposure, APV]] = []
    seen: set[tuple[int, int]] = set()
    for exposure in exposures:
        key = (exposure.dependency.pk, exposure.advisory.pk)
        if key in seen:
            continue
        seen.add(key)
        apv = existing.get(key)
        if apv is None:
            apv = APV(project=project, dependency=exposure.dependency,
                      advisory=exposure.advisory, first_seen_at=now, status=APVStatus.OPEN)
            _refresh(apv, exposure, now)
            new.append((exposure, apv))
        elif _refresh(apv, exposure, now):
            result.updated.append(apv)
        else:
            result.unchanged.append(apv)

    for (_exposure, apv), code in zip(
        new, apv_codes_allocate(day=now.date(), count=len(new)), strict=True
    ):
        apv.code = code
    APV.objects.bulk_create([apv for _, apv in new], batch_size=500)
    result.created = [apv for _, apv in new]
    APV.objects.bulk_update(
        [*result.updated, *result.unchanged],
        fields=[*_REFRESHED, "last_seen_at", "resolved_at", "resolution", "updated_at"],
        batch_size=500,
    )
    gone = [
        apv for key, apv in existing.items()
        if key not in seen and apv.status != APVStatus.RESOLVED
    ]
    result.resolved = _resolve(gone, reason="no longer found by a scan", now=now)

    for apv in result.created:
        send_event_on_commit("apvs", "apv.created", apv_payload(apv))
    for apv in [*result.updated, *result.resolved]:
        send_event_on_commit("apvs", "apv.updated", apv_payload(apv))
    if result.created or result.updated or result.resolved:
        stats_push_on_commit()
    log.info(
        "apvs.synced", project=project.name, created=len(result.created),
        updated=len(result.updated), unchanged=len(result.unchanged),
        resolved=len(result.resolved),
    )
    return result


def _resolve(apvs: list[APV], *, reason: str, now: datetime) -> list[APV]:
    for apv in apvs:
        apv.status, apv.resolved_at, apv.resolution = APVStatus.RESOLVED, now, reason
        apv.updated_at = now
    APV.objects.bulk_update(apvs, fields=["status", "resolved_at", "resolution", "updated_at"],
                            batch_size=500)
    return apvs


@transaction.atomic
def apvs_resolve_for_withdrawn_advisories(*, osv_ids: list[str]) -> list[APV]:
    """A withdrawn advisory matches nothing, so its unresolved APVs are resolved."""
    apvs = list(
        APV.objects.select_for_update(of=("self",))
        .filter(advisory__osv_id__in=osv_ids)
        .exclude(status=APVStatus.RESOLVED)
        .select_related("project", "dependency", "advisory")
    )
    _resolve(apvs, reason="advisory withdrawn", now=timezone.now())
    for apv in apvs:
        send_event_on_commit("apvs", "apv.updated", apv_payload(apv))
    return apvs


def apvs_move_for_patch(*, patch, status: str, before: tuple[str, ...]) -> list[APV]:
    """Move the APVs whose current patch is ``patch`` and whose status is one of ``before``
    to ``status`` (wargaming's validating/pending_review steps, ML-first's route to review),
    pushing each change after commit."""
    with transaction.atomic():
        apvs = list(APV.objects.select_for_update(of=("self",))
                    .filter(current_patch=patch, status__in=before)
                    .select_related("project", "dependency", "advisory"))
        now = timezone.now()
        for apv in apvs:
            apv.status = status
            # Review time runs from the first arrival in pending_review: a wargame asked
            # for while the APV waited (pending_review → validating → pending_review) does
            # not restart it; a new revision or requested changes clear it (patches, decided).
            if status == APVStatus.PENDING_REVIEW and apv.pending_review_at is None:
                apv.pending_review_at = now
            apv.save(update_fields=["status", "pending_review_at", "updated_at"])
            send_event_on_commit("apvs", "apv.updated", apv_payload(apv))
        if apvs:
            stats_push_on_commit()
    return apvs


#: APVs a change of evidence no longer concerns: their priority and SLA are history.
_SETTLED = (APVStatus.RESOLVED, APVStatus.FALSE_POSITIVE)


def apvs_reprioritise(*, advisory_ids: Iterable[int]) -> list[APV]:
    """Bring the unsettled APVs of these advisories along with them (their EPSS or KEV
    evidence changed, or NVD scored them: docs/nvd.md): severity, CVSS score, priority and
    SLA, in one bulk update of the rows that changed, an ``apv.updated`` event for each after
    commit. Fixed versions are left to the next scan."""
    ids = sorted(set(advisory_ids))
    changed: list[APV] = []
    with transaction.atomic():
        for start in range(0, len(ids), 500):
            apvs = (APV.objects.select_for_update(of=("self",))
                    .filter(advisory_id__in=ids[start:start + 500])
                    .exclude(status__in=_SETTLED)
                    .select_related("project", "dependency", "advisory")
                    .order_by("pk"))
            for apv in apvs:
                before = (apv.severity, apv.cvss_score, apv.priority, apv.sla_due_at)
                apv.severity = apv.advisory.severity
                apv.cvss_score = apv.advisory.cvss_score
                _rank(apv, apv.advisory, direct=apv.dependency.direct,
                      fix_available=bool(apv.fixed_in))
                if (apv.severity, apv.cvss_score, apv.priority, apv.sla_due_at) != before:
                    apv.updated_at = timezone.now()
                    changed.append(apv)
        APV.objects.bulk_update(
            changed, ["severity", "cvss_score", "priority", "sla_due_at", "updated_at"],
            batch_size=500)
        for apv in changed:
            send_event_on_commit("apvs", "apv.updated", apv_payload(apv))
        if changed:
            stats_push_on_commit()
    log.info("apvs.reprioritised", advisories=len(ids), apvs=len(changed))
    return changed


def projects_rescan_for_packages(*, packages: Iterable[tuple[str, str]]) -> list[int]:
    """Enqueue, after commit, one ``inventory.scan_project`` per project that has a present,
    pinned dependency on one of ``packages`` ((ecosystem key, normalised name)): fresh
    advisories raise their APVs within a minute, not at the daily rescan. Returns the
    project ids (each once, however many of its packages changed)."""
    # inventory.tasks imports inventory.services, which imports this module: imported here.
    from apps.inventory.tasks import scan_project

    wanted = {(eco, name) for eco, name in packages}
    names = sorted({name for _, name in wanted})
    projects: set[int] = set()
    for start in range(0, len(names), 500):
        rows = (Dependency.objects.filter(present=True,
                                          normalised_name__in=names[start:start + 500])
                .exclude(version="")
                .values_list("project_id", "ecosystem", "normalised_name").distinct())
        projects.update(project for project, eco, name in rows
                        if (eco.strip().casefold(), name) in wanted)
    for project_id in sorted(projects):
        enqueue_on_commit(scan_project, project_id)
    if projects:
        log.info("apvs.rescan_enqueued", projects=len(projects), packages=len(wanted))
    return sorted(projects)
