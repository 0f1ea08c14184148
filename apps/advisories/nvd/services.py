"""NVD import (docs/nvd.md): parse (``parser``, plain dataclasses) → upsert per CVE, writing
only rows whose values changed (a re-import writes nothing) → derive severity and KEV flags
of the advisories naming a changed CVE → after commit, announce
``exploitation_evidence_changed`` so reviews brings their APVs' severity, priority and SLA
along.

Each file is imported in one transaction: a file that stops being JSON part-way, passes a
cap or is not NVD's format at all stores nothing (its records read so far are rolled back)
and is reported under ``unreadable_sources``. A record that cannot be used is one failure
with its index, CVE and reason; the rest of its file is imported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone

from apps.advisories.evidence import (
    FAILURES_KEPT,
    EvidenceReport,
    advisories_evidence_refresh,
    advisory_cves,
)
from apps.advisories.feeds import FeedError
from apps.advisories.models import Advisory, NvdCve
from apps.advisories.nvd.parser import NvdHeader, NvdRecord, NvdUnreadable, iter_nvd
from apps.advisories.services import advisories_severity_share
from apps.advisories.signals import exploitation_evidence_changed

log = structlog.get_logger(__name__)

#: CVE records written per batch (a yearly feed has ~30,000).
NVD_BATCH = 1_000
_FIELDS = ("source_identifier", "vuln_status", "published", "last_modified", "metrics",
           "cwe_ids", "kev_date_added", "kev_action_due", "kev_required_action",
           "kev_vulnerability_name")


@dataclass
class NvdReport(EvidenceReport):
    #: Records skipped because the stored one is newer (an old yearly feed after the
    #: modified feed): never written back over newer data.
    older: int = 0
    #: Records NVD marks Rejected (stored; their metrics are never used).
    rejected: int = 0
    unreadable_sources: list[FeedError] = field(default_factory=list)
    #: Per file: path, records, NVD's format/version/timestamp, or why it was unreadable.
    sources: list[dict] = field(default_factory=list)
    #: Advisories whose severity, CVSS or KEV flag changed (announced after commit).
    changed_advisory_ids: list[int] = field(default_factory=list)

    def merge(self, other: NvdReport) -> None:
        for name in ("rows", "created", "updated", "unchanged", "failed", "older", "rejected",
                     "advisories_updated"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.failures += other.failures[:max(0, FAILURES_KEPT - len(self.failures))]
        self.changed_advisory_ids += other.changed_advisory_ids

    def as_dict(self) -> dict:
        return {
            **super().as_dict(), "older": self.older, "rejected": self.rejected,
            "unreadable_sources": [{"path": f.where, "reason": f.reason}
                                   for f in self.unreadable_sources],
            "sources": self.sources,
        }

    def summary(self) -> str:
        return (f"nvd records {self.rows}: created {self.created}, updated {self.updated}, "
                f"unchanged {self.unchanged}, older than stored {self.older}, failed "
                f"{self.failed} ({self.rejected} rejected by NVD); advisories updated "
                f"{self.advisories_updated}")


def _values(record: NvdRecord) -> dict:
    return {
        "source_identifier": record.source_identifier, "vuln_status": record.vuln_status,
        "published": record.published, "last_modified": record.last_modified,
        "metrics": [m.as_dict() for m in record.metrics], "cwe_ids": list(record.cwe_ids),
        "kev_date_added": record.kev_date_added, "kev_action_due": record.kev_action_due,
        "kev_required_action": record.kev_required_action,
        "kev_vulnerability_name": record.kev_vulnerability_name,
    }


def _write(batch: dict[str, NvdRecord], report: NvdReport, changed: set[str]) -> None:
    existing = {n.cve: n for n in NvdCve.objects.filter(cve__in=list(batch))}
    new, dirty = [], []
    now = timezone.now()
    for cve, record in batch.items():
        values = _values(record)
        current = existing.get(cve)
        if current is None:
            new.append(NvdCve(cve=cve, **values))
            changed.add(cve)
            continue
        if current.last_modified and record.last_modified < current.last_modified:
            report.older += 1
            continue
        if any(getattr(current, k) != v for k, v in values.items()):
            for k, v in values.items():
                setattr(current, k, v)
            current.updated_at = now
            dirty.append(current)
            changed.add(cve)
        else:
            report.unchanged += 1
    NvdCve.objects.bulk_create(new, batch_size=500)
    NvdCve.objects.bulk_update(dirty, [*_FIELDS, "updated_at"], batch_size=500)
    report.created += len(new)
    report.updated += len(dirty)


def advisories_nvd_refresh(*, cves: Iterable[str]) -> list[int]:
    """Re-derive severity/CVSS (``advisories_severity_share``) and the KEV flag of every
    advisory naming one of ``cves``; returns the ids of those that changed."""
    named = sorted(advisory_cves(None, set(cves)))
    if not named:
        return []
    return sorted({*advisories_severity_share(advisory_ids=named),
                   *advisories_evidence_refresh(advisory_ids=named)})


def _import_file(path: Path, *, on_row: Callable[[int], None]) -> NvdReport:
    """One file in one transaction; raises ``NvdUnreadable`` (nothing kept) when the file
    cannot be read whole."""
    part = NvdReport(feed="nvd")
    header = NvdHeader()
    changed: set[str] = set()
    with transaction.atomic():
        batch: dict[str, NvdRecord] = {}
        for item in iter_nvd(path, header, max_bytes=settings.NVD_MAX_FILE_BYTES,
                             max_record_bytes=settings.NVD_MAX_RECORD_BYTES):
            if isinstance(item, FeedError):
                part.fail(item)
                continue
            part.rows += 1
            part.rejected += item.rejected
            prior = batch.get(item.cve)
            # A CVE listed twice (overlapping API pages): the newer record wins.
            if prior is None or item.last_modified >= prior.last_modified:
                batch[item.cve] = item
            if len(batch) >= NVD_BATCH:
                _write(batch, part, changed)
                batch = {}
                on_row(part.rows)
        if batch:
            _write(batch, part, changed)
        on_row(part.rows)
        ids = advisories_nvd_refresh(cves=changed)
        part.advisories_updated = len(ids)
        part.changed_advisory_ids = ids
        if ids:
            transaction.on_commit(lambda: exploitation_evidence_changed.send(
                sender=Advisory, advisory_ids=ids))
    part.sources = [{"path": str(path), "records": part.rows, "format": header.format,
                     "version": header.version, "timestamp": header.timestamp,
                     "total_results": header.total_results,
                     "results_per_page": header.results_per_page,
                     "start_index": header.start_index}]
    return part


def nvd_import(*, paths: Iterable[str | Path],
               on_progress: Callable[[int], None] | None = None) -> NvdReport:
    """Import NVD CVE JSON 2.0 files (feeds or saved API responses); see the module
    docstring. ``on_progress(rows)`` is called with the records read so far."""
    report = NvdReport(feed="nvd")
    for raw_path in paths:
        path = Path(raw_path)
        done = report.rows

        def on_row(rows: int, done: int = done) -> None:
            if on_progress:
                on_progress(done + rows)

        try:
            part = _import_file(path, on_row=on_row)
        except NvdUnreadable as exc:
            reason = str(exc)
        except DatabaseError as exc:  # nothing of the file was kept
            log.exception("advisories.nvd_file_refused", path=str(path))
            reason = f"{path.name}: the database refused the file: {str(exc).strip()[:300]}"
        else:
            report.merge(part)
            report.sources += part.sources
            continue
        report.unreadable_sources.append(FeedError(str(path), reason))
        report.sources.append({"path": str(path), "unreadable": reason})
        log.warning("advisories.nvd_file_unreadable", path=str(path), reason=reason)
    report.unreadable = "; ".join(f.reason for f in report.unreadable_sources)
    log.info("advisories.nvd_imported", **{k: v for k, v in report.as_dict().items()
                                          if k not in ("failures", "sources")})
    return report
