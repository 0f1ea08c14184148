"""Advisory import: fetch → parse (plain dataclasses) → upsert by content hash → post-process.

Idempotent by construction: a record whose content hash is unchanged is skipped without a
write, so re-importing a source creates and updates nothing. Bad input never stops an
import: each failure is reported with its path and reason and the rest is imported. Each
record is written in its own savepoint, so one the database refuses fails alone.

Memory is bounded by the limits in `apps.advisories.osv.sources.Limits` (one document at a
time, at most ADVISORY_MAX_FILE_BYTES) and by the batch: at most BATCH_SIZE records and
BATCH_MAX_BYTES of canonical JSON are held before they are written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import structlog
from django.conf import settings
from django.db import DatabaseError, models, transaction
from django.db.models import Q

from apps.advisories.evidence import advisories_evidence_refresh
from apps.advisories.feeds import CVE_RE
from apps.advisories.models import (
    SEVERITY_RANK,
    Advisory,
    AdvisoryAlias,
    AffectedPackage,
    CvssSource,
    NvdCve,
    Severity,
)
from apps.advisories.nvd.parser import REJECTED as NVD_REJECTED
from apps.advisories.nvd.parser import VERSION_RANK as NVD_VERSION_RANK
from apps.advisories.nvd.parser import preferred_metric
from apps.advisories.osv import (
    AdvisoryParseError,
    ParsedAdvisory,
    RawRecord,
    RecordError,
    iter_source,
    parse_osv,
)
from apps.advisories.osv.matching import unorderable_reason
from apps.advisories.osv.parser import MAX_DEPTH, MAX_RECORD_BYTES, severity_for_score
from apps.advisories.osv.sources import Limits
from apps.advisories.signals import advisories_changed, advisories_withdrawn

log = structlog.get_logger(__name__)

#: Records written per transaction: big enough to be fast, small enough that a database
#: error loses (rolls back) only one batch, never what earlier batches stored.
BATCH_SIZE = 500
#: Canonical JSON held in one batch at most (records are kilobytes: 500 PyPA records are
#: about 1.5 MB); bounds memory when a feed holds many large records.
BATCH_MAX_BYTES = 32 * 1024 * 1024


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
    #: Sources that could not be read at all (also listed in `failures`).
    unreadable_sources: list[ImportFailure] = field(default_factory=list)
    #: Records stored with a range that cannot be ordered (id, path, reason).
    unparseable_ranges: list[dict[str, str]] = field(default_factory=list)
    #: Primary keys of the advisories created or updated (announced after the import).
    changed_ids: list[int] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def seen(self) -> int:
        return self.created + self.updated + self.unchanged + self.failed

    @property
    def records(self) -> int:
        """Records (or files that never became one) processed: `seen` minus unread sources."""
        return self.seen - len(self.unreadable_sources)

    def merge(self, other: ImportReport) -> None:
        self.created += other.created
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.withdrawn += other.withdrawn
        self.withdrawn_ids += other.withdrawn_ids
        self.failures += other.failures
        self.unparseable_ranges += other.unparseable_ranges
        self.changed_ids += other.changed_ids

    def as_dict(self) -> dict:
        return {
            "records": self.records,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "withdrawn": self.withdrawn,
            "failed": self.failed,
            "failures": [{"path": f.path, "reason": f.reason} for f in self.failures],
            "unreadable_sources": [
                {"path": f.path, "reason": f.reason} for f in self.unreadable_sources
            ],
            "unparseable_ranges": list(self.unparseable_ranges),
        }


class RecordRefused(Exception):
    """A parsed record the database would not store as it is (checked before writing)."""


def _parse_limits() -> dict:
    return {
        "max_record_bytes": getattr(settings, "ADVISORY_MAX_RECORD_BYTES", MAX_RECORD_BYTES),
        "max_depth": getattr(settings, "ADVISORY_MAX_DEPTH", MAX_DEPTH),
    }


def _parsed_records(
    sources: Iterable[str], report: ImportReport
) -> Iterator[tuple[str, ParsedAdvisory]]:
    seen: dict[str, str] = {}
    limits = Limits.from_settings()
    parse_limits = _parse_limits()
    for source in sources:
        for item in iter_source(source, limits=limits):
            if isinstance(item, RecordError):
                failure = ImportFailure(item.path, item.reason)
                report.failures.append(failure)
                if item.unreadable_source:
                    report.unreadable_sources.append(failure)
                log.warning("advisories.record_failed", path=item.path, reason=item.reason)
                continue
            assert isinstance(item, RawRecord)
            try:
                # Not strict: a range event that is no version of the ecosystem marks its
                # range unparseable instead of refusing the record (docs/advisories.md).
                parsed = parse_osv(item.data, path=item.path, strict=False, **parse_limits)
            except AdvisoryParseError as exc:
                report.failures.append(ImportFailure(item.path, exc.reason))
                log.warning("advisories.record_failed", path=item.path, reason=exc.reason)
                continue
            except RecursionError:
                reason = "nested too deeply to parse"
                report.failures.append(ImportFailure(item.path, reason))
                continue
            if parsed.id in seen:
                report.failures.append(
                    ImportFailure(item.path, f"duplicate id {parsed.id}, also in {seen[parsed.id]}")
                )
                continue
            seen[parsed.id] = item.path
            yield item.path, parsed


def _batches(
    records: Iterator[tuple[str, ParsedAdvisory]]
) -> Iterator[list[tuple[str, ParsedAdvisory]]]:
    """At most BATCH_SIZE records and about BATCH_MAX_BYTES of canonical JSON per batch."""
    batch: list[tuple[str, ParsedAdvisory]] = []
    size = 0
    for path, parsed in records:
        batch.append((path, parsed))
        size += parsed.size
        if len(batch) >= BATCH_SIZE or size >= BATCH_MAX_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


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
        # Its own severity, as parsed; one carried from a twin or from NVD is set again
        # afterwards (advisories_severity_share), so a record that gains its own always wins.
        "own_severity": parsed.severity,
        "severity_from": "",
        "cvss_source": CvssSource.OSV,
        "nvd_metric_source": "",
        "nvd_metric_type": "",
    }


def _stored_range(rng) -> dict:
    stored = {"type": rng.type, "events": [{k: v} for k, v in rng.events], "repo": rng.repo}
    if rng.unparseable:
        stored["unparseable"] = rng.unparseable
    return stored


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
            ranges=[_stored_range(r) for r in a.ranges],
            versions=list(a.versions),
            fixed_versions=list(a.fixed_versions),
            unparseable_reason=unorderable_reason(a),
        )
        for a in parsed.affected
    ]
    return aliases, affected


def _check_lengths(instances: Iterable[models.Model]) -> None:
    """Refuse a text longer than its column, the same way on every database (SQLite would
    store it, PostgreSQL refuse it)."""
    for instance in instances:
        for model_field in instance._meta.concrete_fields:
            limit = getattr(model_field, "max_length", None)
            if not limit or not isinstance(model_field, models.CharField):
                continue
            value = getattr(instance, model_field.attname)
            if isinstance(value, str) and len(value) > limit:
                raise RecordRefused(
                    f"{instance._meta.model_name}.{model_field.name} is {len(value)} characters, "
                    f"above the {limit} the database stores ({value[:40]!r}…)"
                )


def _store(current: Advisory | None, parsed: ParsedAdvisory, *, source: str, path: str
           ) -> Advisory:
    """Write one record and its children (inside the caller's savepoint)."""
    fields = _fields(parsed, source=source, path=path)
    if current is None:
        advisory = Advisory(osv_id=parsed.id, **fields)
        aliases, affected = _children(advisory, parsed)
        _check_lengths([advisory, *aliases, *affected])
        advisory.save(force_insert=True)
    else:
        advisory = current
        for name, value in fields.items():
            setattr(advisory, name, value)
        aliases, affected = _children(advisory, parsed)
        _check_lengths([advisory, *aliases, *affected])
        advisory.save(update_fields=[*fields, "updated_at"])
        # The children of an updated record are replaced wholesale: simpler than a diff
        # and cheap (a record has a handful of rows).
        AdvisoryAlias.objects.filter(advisory=advisory).delete()
        AffectedPackage.objects.filter(advisory=advisory).delete()
    AdvisoryAlias.objects.bulk_create(aliases)
    AffectedPackage.objects.bulk_create(affected)
    return advisory


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


@transaction.atomic
def _write_batch(batch: list[tuple[str, ParsedAdvisory]], *, source: str) -> ImportReport:
    """Upsert one batch, each record in its own savepoint; returns its counts and failures
    (merged only once the batch has committed)."""
    report = ImportReport()
    ids = [parsed.id for _, parsed in batch]
    existing = {
        a.osv_id: a
        for a in Advisory.objects.filter(osv_id__in=ids).only(
            "id", "osv_id", "content_hash", "withdrawn"
        )
    }
    for path, parsed in batch:
        current = existing.get(parsed.id)
        if current is not None and current.content_hash == parsed.content_hash:
            report.unchanged += 1
            continue
        was_withdrawn = current is not None and current.withdrawn is not None
        try:
            # A savepoint per record: what the database refuses (PostgreSQL: NUL in text,
            # an over-long value, ...) rolls back this record alone, never its neighbours.
            with transaction.atomic():
                stored = _store(current, parsed, source=source, path=path)
        except RecordRefused as exc:
            report.failures.append(ImportFailure(path, str(exc)))
            continue
        except (DatabaseError, ValueError, TypeError) as exc:
            log.warning("advisories.record_refused_by_database", path=path, id=parsed.id,
                        error=_first_line(exc))
            report.failures.append(
                ImportFailure(path, f"the database refused the record: {_first_line(exc)}"))
            continue
        report.changed_ids.append(stored.pk)
        if current is None:
            report.created += 1
        else:
            report.updated += 1
        if parsed.withdrawn is not None and not was_withdrawn:
            report.withdrawn += 1
            if current is not None:
                report.withdrawn_ids.append(parsed.id)
        report.unparseable_ranges += [
            {"id": parsed.id, "path": path, "reason": reason}
            for reason in parsed.unparseable_ranges
        ]
    return report


def advisories_import(
    *,
    sources: Iterable[str],
    source_name: str = "",
    on_progress: Callable[[ImportReport], None] | None = None,
    announce: bool = True,
) -> ImportReport:
    """Import OSV records from files, folders, zips or URLs; see the module docstring.

    Post-processing of what changed: severity carried across aliases, exploitation
    evidence, and (``announce``) ``advisories_changed`` after commit, so projects that
    depend on a named package are rescanned. A caller importing several sources may pass
    ``announce=False`` and call ``advisories_announce`` once with the merged report."""
    sources = list(sources)
    source = source_name or (sources[0] if len(sources) == 1 else "multiple")
    report = ImportReport()
    for batch in _batches(_parsed_records(sources, report)):
        try:
            done = _write_batch(batch, source=source[:200])
        except DatabaseError as exc:  # the batch's commit failed: it loses this batch only
            log.exception("advisories.import_batch_failed", size=len(batch))
            for path, _parsed in batch:
                report.failures.append(
                    ImportFailure(path, f"database error: {_first_line(exc)}"))
            continue
        report.merge(done)
        if on_progress:
            on_progress(report)
    if report.withdrawn_ids:
        _resolve_apvs_of_withdrawn(report.withdrawn_ids)
    if report.changed_ids:
        with transaction.atomic():
            report.changed_ids = sorted({
                *report.changed_ids,
                *advisories_severity_share(advisory_ids=report.changed_ids),
                *advisories_evidence_refresh(advisory_ids=report.changed_ids),
            })
    if announce:
        advisories_announce(advisory_ids=report.changed_ids)
    log.info("advisories.imported", source=source, records=report.records,
             created=report.created, updated=report.updated, unchanged=report.unchanged,
             withdrawn=report.withdrawn, failed=report.failed,
             unreadable_sources=len(report.unreadable_sources),
             unparseable_ranges=len(report.unparseable_ranges))
    return report


def _resolve_apvs_of_withdrawn(osv_ids: list[str]) -> None:
    """A withdrawn advisory matches nothing: its unresolved APVs are resolved (by reviews,
    which subscribes to ``advisories_withdrawn``)."""
    advisories_withdrawn.send(sender=Advisory, osv_ids=osv_ids)


def advisories_announce(*, advisory_ids: Iterable[int]) -> None:
    """After commit, send ``advisories_changed`` with these advisories and the packages they
    name (reviews rescans the projects that depend on one of them)."""
    ids = sorted(set(advisory_ids))
    if not ids:
        return
    packages = sorted(set(
        AffectedPackage.objects.filter(advisory_id__in=ids)
        .values_list("ecosystem_key", "normalised_name")))
    transaction.on_commit(lambda: advisories_changed.send(
        sender=Advisory, advisory_ids=ids, packages=packages))


# --- Severity across aliases and from NVD -------------------------------------------------
#: Advisory columns the severity derivation reads and writes.
_SEVERITY_FIELDS = ["severity", "cvss_score", "cvss_vector", "severity_from", "cvss_source",
                    "nvd_metric_source", "nvd_metric_type"]


def _own(advisory: Advisory) -> tuple[str, float | None, str]:
    """Severity, score and vector of the advisory's own OSV record. The columns hold them
    unless carried (``severity_from`` set), and one is carried only when the record has no
    CVSS score, so then its own score and vector are none and its severity is kept in
    ``own_severity``."""
    if advisory.severity_from == "":
        return advisory.severity, advisory.cvss_score, advisory.cvss_vector
    return advisory.own_severity, None, ""


#: How much an own severity is worth believing: one computed from a CVSS vector, then one a
#: database stated (GHSA's database_specific.severity), then none.
def _confidence(advisory: Advisory) -> tuple[int, int]:
    severity, score, _vector = _own(advisory)
    return (2 if score is not None else 1), SEVERITY_RANK.get(severity, 0)


def _identifiers(advisory: Advisory) -> set[str]:
    return {advisory.osv_id, *(a for a in advisory.aliases if isinstance(a, str))}


def _cve_ids(advisory: Advisory) -> set[str]:
    return {name.upper() for name in _identifiers(advisory) if CVE_RE.match(name.upper())}


def _sharing(identifiers: set[str]) -> list[Advisory]:
    """Advisories whose id or one of whose aliases is among ``identifiers``."""
    names = sorted(identifiers)
    found: dict[int, Advisory] = {}
    for start in range(0, len(names), 500):
        chunk = names[start:start + 500]
        for advisory in Advisory.objects.filter(
                Q(osv_id__in=chunk) | Q(alias_rows__alias__in=chunk)
        ).order_by().distinct().only(
                "pk", "osv_id", "aliases", "own_severity", "withdrawn", *_SEVERITY_FIELDS):
            found[advisory.pk] = advisory
    return list(found.values())


def _nvd_scores(cves: set[str]) -> dict[str, dict]:
    """{CVE: the NVD metric to use for it} for the CVEs NVD scores and has not rejected."""
    names = sorted(cves)
    chosen: dict[str, dict] = {}
    for start in range(0, len(names), 500):
        for cve, metrics in NvdCve.objects.filter(cve__in=names[start:start + 500]).exclude(
                vuln_status=NVD_REJECTED).values_list("cve", "metrics"):
            metric = preferred_metric(metrics)
            if metric is not None:
                chosen[cve] = dict(metric)
    return chosen


def _from_nvd(advisory: Advisory, nvd: dict[str, dict]) -> dict | None:
    """NVD's CVSS for the advisory: of its CVEs' chosen metrics the highest score (an
    advisory naming several CVEs is as severe as the worst), then a Primary one, then the
    newer version, then the CVE id."""
    scored = [(cve, nvd[cve]) for cve in _cve_ids(advisory) if cve in nvd]
    if not scored:
        return None
    cve, metric = max(scored, key=lambda item: (
        item[1]["base_score"], item[1]["type"] == "Primary",
        NVD_VERSION_RANK.get(item[1]["version"], 0), item[0]))
    return {"severity": severity_for_score(metric["base_score"]),
            "cvss_score": metric["base_score"], "cvss_vector": metric["vector"],
            "severity_from": cve, "cvss_source": CvssSource.NVD,
            "nvd_metric_source": metric["source"][:200], "nvd_metric_type": metric["type"]}


def _carried(severity: str, score: float | None, vector: str, donor: str = "") -> dict:
    return {"severity": severity, "cvss_score": score, "cvss_vector": vector,
            "severity_from": donor, "cvss_source": CvssSource.OSV, "nvd_metric_source": "",
            "nvd_metric_type": ""}


def advisories_severity_share(*, advisory_ids: Iterable[int]) -> list[int]:
    """Derive the severity, CVSS score and vector of the given advisories and their twins
    (docs/advisories.md "Severity across aliases", docs/nvd.md), first that applies:

    1. its own CVSS score (from its OSV record's vector) always wins;
    2. else NVD's CVSS for one of its CVEs (its id or aliases; rejected CVEs never), marked
       ``cvss_source = "nvd"``, ``severity_from`` = the CVE, with NVD's metric source/type;
    3. else the severity its record states (GHSA's database_specific.severity);
    4. else the own severity of the most trustworthy live advisory sharing an identifier
       with it (one's id is the other's alias, or both list one alias), ``severity_from``
       naming it: a severity computed from a vector before a stated one, then the more
       severe, then the id. Only own severities are carried, never carried ones;
    5. else unknown.

    Returns the ids of the advisories that changed."""
    touched = list(Advisory.objects.filter(pk__in=list(advisory_ids)).only("osv_id", "aliases"))
    if not touched:
        return []
    group = _sharing(set().union(*(_identifiers(a) for a in touched)))
    # Donors of the group's members may sit one alias further: fetch those too.
    neighbours = {a.pk: a for a in _sharing(set().union(*(_identifiers(a) for a in group)))}
    by_identifier: dict[str, list[Advisory]] = {}
    for advisory in neighbours.values():
        for name in _identifiers(advisory):
            by_identifier.setdefault(name, []).append(advisory)
    nvd = _nvd_scores(set().union(*(_cve_ids(a) for a in group)))
    dirty = []
    for advisory in group:
        severity, score, vector = _own(advisory)
        if score is not None:
            values = _carried(severity, score, vector)
        elif (scored := _from_nvd(advisory, nvd)) is not None:
            values = scored
        elif severity != Severity.UNKNOWN:
            values = _carried(severity, None, "")
        else:
            donors = {
                other.pk: other
                for name in _identifiers(advisory) for other in by_identifier.get(name, ())
                if other.pk != advisory.pk and other.withdrawn is None
                and _own(other)[0] != Severity.UNKNOWN
            }
            if donors:
                best = max(donors.values(), key=lambda d: (*_confidence(d), d.osv_id))
                values = _carried(*_own(best), donor=best.osv_id)
            else:
                values = _carried(Severity.UNKNOWN, None, "")
        if any(getattr(advisory, k) != v for k, v in values.items()):
            for k, v in values.items():
                setattr(advisory, k, v)
            dirty.append(advisory)
    Advisory.objects.bulk_update(dirty, _SEVERITY_FIELDS, batch_size=500)
    return [a.pk for a in dirty]
