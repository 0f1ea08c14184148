"""Exploitation evidence: EPSS scores and CISA KEV entries per CVE, and their denormalised
copy on each advisory that names the CVE (its id or an alias); docs/advisories.md.

fetch (optional, ``EPSS_URL``/``KEV_URL`` behind the ``evidence`` breaker) → parse
(``feeds``, plain dataclasses) → upsert per CVE, writing only rows whose values changed (a
re-import writes nothing) → refresh ``kev_listed``/``kev_date_added``/``epss_score``/
``epss_percentile`` on the advisories of the changed CVEs (one bulk update) → after commit,
announce ``exploitation_evidence_changed`` so reviews re-prioritises their APVs.
"""

from __future__ import annotations

import shutil
import tempfile
import urllib.error
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import structlog
from django.conf import settings
from django.db import transaction

from apps.advisories.feeds import (
    CVE_RE,
    EpssHeader,
    EpssRow,
    FeedError,
    FeedUnreadable,
    KevRow,
    iter_epss,
    parse_kev,
)
from apps.advisories.models import Advisory, AdvisoryAlias, EpssScore, KevEntry, NvdCve
from apps.advisories.osv.sources import _download, _is_outage
from apps.advisories.signals import exploitation_evidence_changed
from apps.core.breakers import Breaker, CircuitBreakerError

log = structlog.get_logger(__name__)

#: EPSS rows written per transaction (the daily file has ~300,000).
EPSS_BATCH = 5_000
_CHUNK = 1_000  # IN (...) lists
#: Failures kept in a report (all are counted).
FAILURES_KEPT = 1_000

#: Downloads of EPSS_URL and KEV_URL pass this breaker: after BREAKER_EVIDENCE_FAILURES
#: outages in a row the daily job reports "skipped" at once until BREAKER_EVIDENCE_RESET_S.
EVIDENCE_BREAKER = Breaker(
    "evidence", failure_threshold=getattr(settings, "BREAKER_EVIDENCE_FAILURES", 3),
    recovery_timeout=getattr(settings, "BREAKER_EVIDENCE_RESET_S", 300.0),
    is_failure=_is_outage)


@dataclass
class EvidenceReport:
    feed: str
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    failed: int = 0
    failures: list[FeedError] = field(default_factory=list)
    #: Advisories whose denormalised evidence changed.
    advisories_updated: int = 0
    #: Why nothing was imported (the file is not the format, the download failed).
    unreadable: str = ""
    meta: dict = field(default_factory=dict)

    def fail(self, error: FeedError) -> None:
        self.failed += 1
        if len(self.failures) < FAILURES_KEPT:
            self.failures.append(error)

    def as_dict(self) -> dict:
        return {
            "feed": self.feed, "rows": self.rows, "created": self.created,
            "updated": self.updated, "unchanged": self.unchanged, "removed": self.removed,
            "failed": self.failed, "advisories_updated": self.advisories_updated,
            "failures": [{"path": f.where, "reason": f.reason} for f in self.failures],
            "unreadable": self.unreadable, **self.meta,
        }

    def summary(self) -> str:
        """The command's closing line."""
        return (f"{self.feed} rows {self.rows}: created {self.created}, updated "
                f"{self.updated}, unchanged {self.unchanged}, removed {self.removed}, "
                f"failed {self.failed}; advisories updated {self.advisories_updated}")


# --- EPSS ---------------------------------------------------------------------------------
def _epss_write(batch: dict[str, EpssRow], header: EpssHeader, report: EvidenceReport,
                changed: set[str]) -> None:
    with transaction.atomic():
        existing = {e.cve: e for e in EpssScore.objects.filter(cve__in=list(batch))}
        new, dirty = [], []
        for cve, row in batch.items():
            values = {"score": row.score, "percentile": row.percentile,
                      "score_date": header.score_date, "model_version": header.model_version}
            current = existing.get(cve)
            if current is None:
                new.append(EpssScore(cve=cve, **values))
                changed.add(cve)
                continue
            if (current.score, current.percentile) != (row.score, row.percentile):
                changed.add(cve)
            if any(getattr(current, k) != v for k, v in values.items()):
                for k, v in values.items():
                    setattr(current, k, v)
                dirty.append(current)
            else:
                report.unchanged += 1
        EpssScore.objects.bulk_create(new, batch_size=1000)
        EpssScore.objects.bulk_update(dirty, ["score", "percentile", "score_date",
                                              "model_version", "updated_at"], batch_size=1000)
        report.created += len(new)
        report.updated += len(dirty)


def epss_import(*, path: str | Path) -> EvidenceReport:
    """Import FIRST's EPSS CSV (plain or gzip); see the module docstring."""
    report = EvidenceReport(feed="epss")
    header = EpssHeader()
    changed: set[str] = set()
    batch: dict[str, EpssRow] = {}
    try:
        for item in iter_epss(Path(path), header):
            if isinstance(item, FeedError):
                report.fail(item)
                continue
            report.rows += 1
            batch[item.cve] = item  # a CVE listed twice: the later row wins
            if len(batch) >= EPSS_BATCH:
                _epss_write(batch, header, report, changed)
                batch = {}
        if batch:
            _epss_write(batch, header, report, changed)
    except FeedUnreadable as exc:
        report.unreadable = str(exc)
        return report
    report.meta = {"model_version": header.model_version,
                   "score_date": header.score_date.isoformat() if header.score_date else None}
    _refresh_and_announce(changed, report)
    log.info("advisories.epss_imported", **{k: v for k, v in report.as_dict().items()
                                           if k != "failures"})
    return report


# --- KEV ----------------------------------------------------------------------------------
_KEV_FIELDS = ("vendor_project", "product", "vulnerability_name", "date_added",
               "short_description", "required_action", "due_date",
               "known_ransomware_campaign_use", "notes", "cwes")


def _kev_values(row: KevRow) -> dict:
    values = {name: getattr(row, name) for name in _KEV_FIELDS}
    values["cwes"] = list(row.cwes)
    return values


def kev_import(*, path: str | Path) -> EvidenceReport:
    """Import CISA's KEV catalog. The file is the whole catalog, so an entry it no longer
    lists is removed (CISA does remove entries), except when no entry of the file could be
    read, and except the CVEs of rows it lists but we could not read."""
    report = EvidenceReport(feed="kev")
    try:
        catalog = parse_kev(Path(path), max_bytes=settings.ADVISORY_MAX_FILE_BYTES)
    except FeedUnreadable as exc:
        report.unreadable = str(exc)
        return report
    report.meta = {"catalog_version": catalog.catalog_version,
                   "date_released": catalog.date_released}
    rows: dict[str, KevRow] = {}
    kept: set[str] = set()
    for item in catalog.rows:
        if isinstance(item, FeedError):
            report.fail(item)
            if item.cve:
                kept.add(item.cve)
            continue
        report.rows += 1
        rows[item.cve] = item
    changed: set[str] = set()
    with transaction.atomic():
        existing = {e.cve: e for e in KevEntry.objects.all()}
        new, dirty = [], []
        for cve, row in rows.items():
            values = _kev_values(row)
            current = existing.get(cve)
            if current is None:
                new.append(KevEntry(cve=cve, **values))
                changed.add(cve)
            elif any(getattr(current, k) != v for k, v in values.items()):
                if current.date_added != row.date_added:
                    changed.add(cve)
                for k, v in values.items():
                    setattr(current, k, v)
                dirty.append(current)
            else:
                report.unchanged += 1
        gone = [cve for cve in existing if cve not in rows and cve not in kept] if rows else []
        KevEntry.objects.bulk_create(new, batch_size=1000)
        KevEntry.objects.bulk_update(dirty, [*_KEV_FIELDS, "updated_at"], batch_size=1000)
        KevEntry.objects.filter(cve__in=gone).delete()
        changed.update(gone)
        report.created, report.updated, report.removed = len(new), len(dirty), len(gone)
    _refresh_and_announce(changed, report)
    log.info("advisories.kev_imported", **{k: v for k, v in report.as_dict().items()
                                          if k != "failures"})
    return report


# --- Advisories ---------------------------------------------------------------------------
def _refresh_and_announce(changed_cves: set[str], report: EvidenceReport) -> None:
    if not changed_cves:
        return
    with transaction.atomic():
        ids = advisories_evidence_refresh(cves=changed_cves)
        report.advisories_updated = len(ids)
        if ids:
            transaction.on_commit(lambda: exploitation_evidence_changed.send(
                sender=Advisory, advisory_ids=ids))


def advisory_cves(advisory_ids: Iterable[int] | None, cves: set[str] | None
                  ) -> dict[int, set[str]]:
    """{advisory id: its CVE ids (its own id when a CVE, and its CVE aliases)} for the
    given advisories, or for those naming one of ``cves``."""
    found: dict[int, set[str]] = defaultdict(set)
    if advisory_ids is not None:
        ids = list(advisory_ids)
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start:start + _CHUNK]
            for pk, alias in AdvisoryAlias.objects.filter(
                    advisory_id__in=chunk, alias__startswith="CVE-").values_list(
                    "advisory_id", "alias"):
                found[pk].add(alias.upper())
            for pk, osv_id in Advisory.objects.filter(pk__in=chunk).values_list("pk", "osv_id"):
                found.setdefault(pk, set())
                if CVE_RE.match(osv_id.upper()):
                    found[pk].add(osv_id.upper())
        return found
    wanted = sorted(cves or ())
    hit: set[int] = set()
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start:start + _CHUNK]
        hit.update(AdvisoryAlias.objects.filter(alias__in=chunk)
                   .values_list("advisory_id", flat=True))
        hit.update(Advisory.objects.filter(osv_id__in=chunk).values_list("pk", flat=True))
    return advisory_cves(sorted(hit), None) if hit else {}


def advisories_evidence_refresh(*, advisory_ids: Iterable[int] | None = None,
                                cves: set[str] | None = None) -> list[int]:
    """Recompute the denormalised evidence of the given advisories (or of those naming one of
    ``cves``) from the EPSS and KEV rows of their CVEs; bulk-updates those that changed and
    returns their ids. Several CVEs on one advisory: KEV-listed if any is, the earliest
    date added, the highest EPSS score and percentile. A CVE is KEV-listed when CISA's
    catalog lists it or NVD's record carries ``cisaExploitAdd`` (docs/nvd.md)."""
    by_advisory = advisory_cves(advisory_ids, cves)
    if not by_advisory:
        return []
    every_cve = sorted(set().union(*by_advisory.values()))
    epss: dict[str, EpssScore] = {}
    kev: dict[str, date] = {}
    for start in range(0, len(every_cve), _CHUNK):
        chunk = every_cve[start:start + _CHUNK]
        epss.update((e.cve, e) for e in EpssScore.objects.filter(cve__in=chunk))
        kev.update((k.cve, k.date_added) for k in KevEntry.objects.filter(cve__in=chunk).only(
            "cve", "date_added"))
        for cve, added in NvdCve.objects.filter(
                cve__in=chunk, kev_date_added__isnull=False).values_list("cve", "kev_date_added"):
            kev[cve] = min(added, kev.get(cve, added))
    fields = ["kev_listed", "kev_date_added", "epss_score", "epss_percentile"]
    dirty = []
    for advisory in Advisory.objects.filter(pk__in=list(by_advisory)).only("pk", *fields):
        names = by_advisory[advisory.pk]
        listed = [kev[c] for c in names if c in kev]
        scored = [epss[c] for c in names if c in epss]
        values = {
            "kev_listed": bool(listed),
            "kev_date_added": min(listed) if listed else None,
            "epss_score": max(e.score for e in scored) if scored else None,
            "epss_percentile": max(e.percentile for e in scored) if scored else None,
        }
        if any(getattr(advisory, k) != v for k, v in values.items()):
            for k, v in values.items():
                setattr(advisory, k, v)
            dirty.append(advisory)
    Advisory.objects.bulk_update(dirty, fields, batch_size=500)
    return [a.pk for a in dirty]


# --- Downloads (beat) ---------------------------------------------------------------------
def evidence_fetch_and_import(*, feed: str, url: str) -> EvidenceReport:
    """Download ``url`` (http(s), ADVISORY_MAX_DOWNLOAD_BYTES cap, behind the ``evidence``
    breaker) and import it as ``feed`` ("epss" or "kev") with the same code as the commands.
    A failed download is a report with ``unreadable`` set, never an exception."""
    importer = {"epss": epss_import, "kev": kev_import}[feed]
    workdir = Path(tempfile.mkdtemp(prefix=f"{feed}-download-"))
    try:
        target = workdir / (Path(url.split("?", 1)[0]).name[-100:] or "download")
        try:
            EVIDENCE_BREAKER.guard(
                _download, url, target, timeout=getattr(settings, "EVIDENCE_TIMEOUT_S", 60.0),
                max_bytes=settings.ADVISORY_MAX_DOWNLOAD_BYTES)
        except CircuitBreakerError:
            return EvidenceReport(feed=feed, unreadable=(
                f"download skipped: evidence downloads failed {EVIDENCE_BREAKER.failure_count} "
                f"times in a row; next attempt in {max(EVIDENCE_BREAKER.open_remaining, 0)} s"))
        except urllib.error.HTTPError as exc:
            return EvidenceReport(feed=feed,
                                  unreadable=f"download failed: HTTP {exc.code} {exc.reason}")
        except (OSError, ValueError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            return EvidenceReport(feed=feed, unreadable=f"download failed: {reason}")
        return importer(path=target)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
