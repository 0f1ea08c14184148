"""Advisory import: fetch → parse (plain dataclasses) → upsert by content hash → post-process.

Idempotent by construction: a record whose content hash is unchanged is skipped without a
write, so re-importing a source creates and updates nothing. Bad input never stops an
import: each failure is reported with its path and reason and the rest is imported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice

import structlog
from django.db import transaction

from apps.advisories.models import Advisory, AdvisoryAlias, AffectedPackage
from apps.advisories.osv import (
    AdvisoryParseError,
    ParsedAdvisory,
    RawRecord,
    RecordError,
    iter_source,
    parse_osv,
)

log = structlog.get_logger(__name__)

#: Records written per transaction: big enough to be fast, small enough that a database
#: error loses (rolls back) only one batch, never what earlier batches stored.
BATCH_SIZE = 500


@dataclass
class ImportFailure:
    path: str
    reason: str


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    withdrawn: int = 0
    failures: list[ImportFailure] = field(default_factory=list)
    withdrawn_ids: list[str] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def seen(self) -> int:
        return self.created + self.updated + self.unchanged + self.failed

    def as_dict(self) -> dict:
        return {
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "withdrawn": self.withdrawn,
            "failed": self.failed,
            "failures": [{"path": f.path, "reason": f.reason} for f in self.failures],
        }


def _parsed_records(
    sources: Iterable[str], report: ImportReport
) -> Iterator[tuple[str, ParsedAdvisory]]:
    seen: dict[str, str] = {}
    for source in sources:
        for item in iter_source(source):
            if isinstance(item, RecordError):
                report.failures.append(ImportFailure(item.path, item.reason))
                continue
            assert isinstance(item, RawRecord)
            try:
                parsed = parse_osv(item.data, path=item.path)
            except AdvisoryParseError as exc:
                report.failures.append(ImportFailure(item.path, exc.reason))
                continue
            if parsed.id in seen:
                report.failures.append(
                    ImportFailure(item.path, f"duplicate id {parsed.id}, also in {seen[parsed.id]}")
                )
                continue
            seen[parsed.id] = item.path
            yield item.path, parsed


def _fields(parsed: ParsedAdvisory, *, source: str, path: str) -> dict:
    vector = next(
        (v.vector for v in parsed.severity_vectors if v.base_score == parsed.cvss_score), ""
    )
    return {
        "aliases": list(parsed.aliases),
        "summary": parsed.summary,
        "details": parsed.details,
        "published": parsed.published,
        "modified": parsed.modified,
        "withdrawn": parsed.withdrawn,
        "severity": parsed.severity,
        "cvss_score": parsed.cvss_score,
        "cvss_vector": vector if parsed.cvss_score is not None else "",
        "severity_vectors": [
            {"type": v.type, "vector": v.vector, "base_score": v.base_score}
            for v in parsed.severity_vectors
        ],
        "cwe_ids": list(parsed.cwe_ids),
        "references": list(parsed.references),
        "source": source,
        "source_path": path[-1000:],
        "content_hash": parsed.content_hash,
        "raw": parsed.raw,
    }


def _children(advisory: Advisory, parsed: ParsedAdvisory):
    aliases = [AdvisoryAlias(advisory=advisory, alias=a) for a in dict.fromkeys(parsed.aliases)]
    affected = [
        AffectedPackage(
            advisory=advisory,
            ecosystem=a.ecosystem,
            ecosystem_key=a.ecosystem.strip().casefold(),
            name=a.name,
            normalised_name=a.normalised_name,
            purl=a.purl,
            ranges=[
                {"type": r.type, "events": [{k: v} for k, v in r.events], "repo": r.repo}
                for r in r_list
            ]
            if (r_list := a.ranges)
            else [],
            versions=list(a.versions),
            fixed_versions=list(a.fixed_versions),
        )
        for a in parsed.affected
    ]
    return aliases, affected


@transaction.atomic
def _write_batch(batch: list[tuple[str, ParsedAdvisory]], *, source: str) -> ImportReport:
    """Upsert one batch; returns its counts (merged only once the batch has committed)."""
    report = ImportReport()
    ids = [parsed.id for _, parsed in batch]
    existing = {
        a.osv_id: a
        for a in Advisory.objects.filter(osv_id__in=ids).only(
            "id", "osv_id", "content_hash", "withdrawn"
        )
    }
    to_create: list[tuple[Advisory, ParsedAdvisory]] = []
    to_update: list[tuple[Advisory, ParsedAdvisory]] = []
    newly_withdrawn: list[str] = []
    for path, parsed in batch:
        current = existing.get(parsed.id)
        if current is not None and current.content_hash == parsed.content_hash:
            report.unchanged += 1
            continue
        fields = _fields(parsed, source=source, path=path)
        if current is None:
            to_create.append((Advisory(osv_id=parsed.id, **fields), parsed))
            report.created += 1
        else:
            was_withdrawn = current.withdrawn is not None
            for name, value in fields.items():
                setattr(current, name, value)
            to_update.append((current, parsed))
            report.updated += 1
            if parsed.withdrawn is not None and not was_withdrawn:
                newly_withdrawn.append(parsed.id)
        if parsed.withdrawn is not None and (current is None or parsed.id in newly_withdrawn):
            report.withdrawn += 1
    report.withdrawn_ids = newly_withdrawn

    Advisory.objects.bulk_create([a for a, _ in to_create], batch_size=BATCH_SIZE)
    if to_update:
        Advisory.objects.bulk_update(
            [a for a, _ in to_update],
            fields=[*_fields(to_update[0][1], source=source, path=""), "updated_at"],
            batch_size=200,
        )
        # The children of an updated record are replaced wholesale: simpler than a diff
        # and cheap (a record has a handful of rows), all inside this transaction.
        updated_ids = [a.pk for a, _ in to_update]
        AdvisoryAlias.objects.filter(advisory_id__in=updated_ids).delete()
        AffectedPackage.objects.filter(advisory_id__in=updated_ids).delete()

    if not (to_create or to_update):
        return report
    if to_create and to_create[0][0].pk is None:
        # SQLite before 3.35 cannot return ids from bulk_create; fetch them.
        pks = dict(
            Advisory.objects.filter(osv_id__in=[a.osv_id for a, _ in to_create]).values_list(
                "osv_id", "id"
            )
        )
        for advisory, _ in to_create:
            advisory.pk = pks[advisory.osv_id]
    aliases: list[AdvisoryAlias] = []
    affected: list[AffectedPackage] = []
    for advisory, parsed in [*to_create, *to_update]:
        a, b = _children(advisory, parsed)
        aliases += a
        affected += b
    AdvisoryAlias.objects.bulk_create(aliases, batch_size=1000)
    AffectedPackage.objects.bulk_create(affected, batch_size=1000)
    return report


def advisories_import(
    *,
    sources: Iterable[str],
    source_name: str = "",
    on_progress: Callable[[ImportReport], None] | None = None,
) -> ImportReport:
    """Import OSV records from files, folders, zips or URLs; see the module docstring."""
    sources = list(sources)
    source = source_name or (sources[0] if len(sources) == 1 else "multiple")
    report = ImportReport()
    records = _parsed_records(sources, report)
    while batch := list(islice(records, BATCH_SIZE)):
        try:
            done = _write_batch(batch, source=source[:200])
        except Exception as exc:  # a database error loses this batch only
            log.exception("advisories.import_batch_failed", size=len(batch))
            for path, _parsed in batch:
                report.failures.append(ImportFailure(path, f"database error: {exc}"))
            continue
        report.created += done.created
        report.updated += done.updated
        report.unchanged += done.unchanged
        report.withdrawn += done.withdrawn
        report.withdrawn_ids += done.withdrawn_ids
        if on_progress:
            on_progress(report)
    if report.withdrawn_ids:
        _resolve_apvs_of_withdrawn(report.withdrawn_ids)
    log.info("advisories.imported", source=source, **{
        k: v for k, v in report.as_dict().items() if k != "failures"
    })
    return report


def _resolve_apvs_of_withdrawn(osv_ids: list[str]) -> None:
    """A withdrawn advisory matches nothing: its unresolved APVs are resolved."""
    from apps.reviews.services import apvs_resolve_for_withdrawn_advisories

    apvs_resolve_for_withdrawn_advisories(osv_ids=osv_ids)
