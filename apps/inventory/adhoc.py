"""Ad-hoc scans: files and folders matched against the imported advisories, nothing stored.

``manage.py scan`` (a pip-audit / osv-scanner style CI gate) is built on :func:`adhoc_scan`:
the manifests are discovered and parsed exactly as a project scan parses its exported tree,
matched through the same :class:`~apps.advisories.selectors.AffectedIndex` (including the
"possibly affected" ranges, with their reason), and given the severity, CVSS score and
priority an APV would get. No Project, Dependency or APV row is read or written: the only
rows this module reads are the advisories.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from apps.advisories import osv
from apps.advisories.models import SEVERITY_RANK, Advisory
from apps.advisories.selectors import AffectedIndex
from apps.inventory.manifests import (
    ParsedDependency,
    ParsedManifest,
    manifest_kind,
    parse_manifest,
    parse_project,
    records,
)
from apps.inventory.manifests.records import ManifestError, relative_posix
from apps.inventory.manifests.requirements import parse_requirements
from apps.inventory.priority import apv_priority
from apps.inventory.services import scan_limits

#: Severities ``--fail-on`` accepts, least severe first.
THRESHOLDS = ("low", "medium", "high", "critical")


class ScanInputError(Exception):
    """A target that cannot be scanned at all (missing, unreadable, not a manifest): the
    command reports it and exits 2, it never passes as a clean scan."""


@dataclass(frozen=True)
class AdhocFinding:
    """One advisory affecting one pinned dependency; the keys of a scan_project finding
    (``apps.reviews.selectors.apv_finding``) without an APV, plus ``match_reason``."""

    package: str
    version: str
    ecosystem: str
    manifest: str  # as the user named it: the target path joined with the manifest's path
    line: int | None
    direct: bool
    advisory: str
    aliases: list[str]
    severity: str
    cvss_score: float | None
    cvss_vector: str
    fixed_in: list[str]
    priority: int
    kev_listed: bool
    epss_percentile: float | None
    summary: str
    cwe_ids: list[str]
    references: list[str]
    #: Why the match is only *possible* (an unorderable range, no versions list); "" when
    #: the version is affected for certain.
    match_reason: str = ""

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def ids(self) -> frozenset[str]:
        return frozenset({self.advisory, *self.aliases})


@dataclass
class AdhocScan:
    targets: list[str]
    manifests: list[str] = field(default_factory=list)
    dependencies: list[ParsedDependency] = field(default_factory=list)
    #: ``{manifest, line, reason}`` per line or file that could not be read (not fatal)
    errors: list[dict] = field(default_factory=list)
    findings: list[AdhocFinding] = field(default_factory=list)

    @property
    def pinned(self) -> int:
        return sum(1 for d in self.dependencies if d.version)


#: ``progress(message, manifests)``: what the scan is doing, and how many manifests it holds
#: so far (the command shows it on a TTY, or when a scan is large).
Progress = Callable[[str, int], None]


def _display(prefix: str, relative: str) -> str:
    """A manifest path as the user would type it: the target joined with the path in it."""
    if not prefix or prefix == "." or relative.startswith("/"):
        return relative  # an include outside the target is named by its absolute path
    return f"{prefix.rstrip('/')}/{relative}"


def _relocated(manifest: ParsedManifest, prefix: str) -> ParsedManifest:
    deps = [ParsedDependency(**{**asdict(d), "manifest_path": _display(prefix, d.manifest_path)})
            for d in manifest.dependencies]
    errors = [ManifestError(_display(prefix, e.manifest_path), e.line, e.reason)
              for e in manifest.errors]
    return ParsedManifest(_display(prefix, manifest.path), manifest.kind, deps, errors,
                          tuple(_display(prefix, p) for p in manifest.unread))


def _folder_manifests(folder: Path) -> list[ParsedManifest]:
    """Discover and parse a folder as a project scan parses its tree; files at its top whose
    name only counts through the folder's own name (``requirements/base.txt`` scanned as
    ``scan requirements/``) are parsed too, as requirements files."""
    manifests = parse_project(folder, scan_limits())
    reported = {m.path for m in manifests} | {
        d.manifest_path for m in manifests for d in m.dependencies}
    context = Path(folder.resolve().name)
    real = folder.resolve()
    extra = sorted(
        entry for entry in folder.iterdir()
        if entry.is_file() and entry.name not in reported
        and entry.resolve().is_relative_to(real)
        and manifest_kind(Path(entry.name)) is None
        and manifest_kind(context / entry.name) is not None
    )
    with records.scan_limits(scan_limits()):
        manifests += [parse_manifest(folder, path) for path in extra]
    return manifests


def _file_manifest(path: Path, *, requirements: bool) -> ParsedManifest:
    root = path.parent
    with records.scan_limits(scan_limits()):
        if not requirements:
            return parse_manifest(root, path)
        try:
            return parse_requirements(root, path)
        except Exception as exc:  # the parser's own guard, as in parse_manifest
            rel = relative_posix(root, path)
            return ParsedManifest(rel, "requirements", [], [
                ManifestError(rel, None, f"internal error while parsing: {exc!r}")],
                unread=(rel,))


def _unusable(manifest: ParsedManifest) -> str:
    """Why an explicitly named file gave nothing to scan ("" when it was read)."""
    if manifest.kind == "unknown" or manifest.path in manifest.unread:
        return "; ".join(e.reason for e in manifest.errors if e.manifest_path == manifest.path) \
            or "cannot be read"
    return ""


def _parse_targets(paths: Sequence[str], requirements: Sequence[str],
                   progress: Progress) -> tuple[list[ParsedManifest], list[str]]:
    targets = [(p, False) for p in paths] + [(r, True) for r in requirements]
    for target, _ in targets:
        if not os.path.exists(target):
            raise ScanInputError(f"{target}: no such file or folder")
        if not os.access(target, os.R_OK):
            raise ScanInputError(f"{target}: permission denied")
    manifests: list[ParsedManifest] = []
    problems: list[str] = []
    for target, is_requirements in targets:
        path = Path(target)
        if path.is_dir() and not is_requirements:
            progress(f"discovering manifests in {target}", len(manifests))
            found = _folder_manifests(path)
            progress(f"{target}: {len(found)} manifest(s) parsed", len(manifests) + len(found))
            if not found:
                problems.append(f"{target}: no dependency manifests found")
            manifests += [_relocated(m, target) for m in found]
        elif path.is_dir():
            raise ScanInputError(f"-r {target}: a folder, not a requirements file")
        else:
            manifest = _file_manifest(path, requirements=is_requirements)
            reason = _unusable(manifest)
            if reason:
                problems.append(f"{target}: {reason}")
            # The file as named; its -r/-c includes relative to the same folder.
            prefix = str(path.parent) if str(path.parent) != "." else ""
            manifests.append(_relocated(manifest, prefix))
    return manifests, problems


def _dependencies(manifests: Iterable[ParsedManifest]) -> list[ParsedDependency]:
    """Each dependency once: a file included by several scanned files is counted once."""
    seen: dict[tuple, ParsedDependency] = {}
    for dep in (d for m in manifests for d in m.dependencies):
        key = (dep.manifest_path, dep.line, dep.ecosystem, dep.normalised_name, dep.version)
        seen.setdefault(key, dep)
    return list(seen.values())


def _match_reason(index: AffectedIndex, advisory: Advisory, dep: ParsedDependency) -> str:
    """``advisory_match_reason`` computed from the index already loaded (no query)."""
    entries = [a for adv, a in index.entries(dep.ecosystem, dep.normalised_name)
               if adv.pk == advisory.pk]
    if any(osv.is_affected(entry, dep.version) for entry in entries):
        return ""
    return next((reason for entry in entries
                 if (reason := osv.possibly_affected(entry, dep.version))), "")


def _finding(index: AffectedIndex, dep: ParsedDependency, advisory: Advisory,
             fixed: tuple[str, ...]) -> AdhocFinding:
    # Severity and score as an APV takes them (apvs_sync_for_project): the advisory's own,
    # "unknown" when it carries none.
    severity = advisory.severity or "unknown"
    return AdhocFinding(
        package=dep.name, version=dep.version or "", ecosystem=dep.ecosystem,
        manifest=dep.manifest_path, line=dep.line, direct=dep.direct,
        advisory=advisory.osv_id, aliases=list(advisory.aliases), severity=severity,
        cvss_score=advisory.cvss_score, cvss_vector=advisory.cvss_vector,
        fixed_in=list(fixed),
        priority=apv_priority(cvss_score=advisory.cvss_score, severity=severity,
                              direct=dep.direct, fix_available=bool(fixed),
                              epss_percentile=advisory.epss_percentile,
                              kev_listed=advisory.kev_listed),
        kev_listed=advisory.kev_listed, epss_percentile=advisory.epss_percentile,
        summary=advisory.summary, cwe_ids=list(advisory.cwe_ids),
        references=[r.get("url") for r in advisory.references
                    if isinstance(r, dict) and r.get("url")][:5],
        match_reason=_match_reason(index, advisory, dep),
    )


def adhoc_scan(*, paths: Sequence[str] = (), requirements: Sequence[str] = (),
               progress: Progress | None = None) -> AdhocScan:
    """Scan files and folders against the imported advisories; writes nothing.

    A folder is discovered and parsed as a project tree is; a file by its name (``.txt``
    as requirements, ``.json`` as CycloneDX); ``requirements`` are read as pip requirements
    files whatever their name. Raises :class:`ScanInputError` when a target is missing, a
    named file cannot be read or is no manifest, or a folder holds no manifest. Lines and
    discovered files that cannot be read are listed in ``errors`` and the rest is scanned.
    """
    progress = progress or (lambda _message, _count: None)
    if not paths and not requirements:
        raise ScanInputError("give a PATH or -r FILE to scan")
    manifests, problems = _parse_targets(paths, requirements, progress)
    if problems:
        raise ScanInputError("\n".join(problems))
    result = AdhocScan(targets=[*paths, *requirements], manifests=[m.path for m in manifests])
    result.errors = [{"manifest": e.manifest_path, "line": e.line, "reason": e.reason}
                     for m in manifests for e in m.errors]
    result.dependencies = _dependencies(manifests)
    pinned = [d for d in result.dependencies if d.version]
    progress(f"matching {len(pinned)} pinned of {len(result.dependencies)} dependencies "
             f"from {len(manifests)} manifest(s) against the advisories", len(manifests))
    index = AffectedIndex((d.ecosystem, d.normalised_name) for d in pinned)
    findings = [
        _finding(index, dep, advisory, fixed)
        for dep in pinned
        for advisory, fixed in index.matches(dep.ecosystem, dep.normalised_name, dep.version)
    ]
    findings.sort(key=lambda f: (-SEVERITY_RANK.get(f.severity, 0), -f.priority,
                                 f.package.lower(), f.version, f.advisory, f.manifest))
    result.findings = findings
    return result


def gate(findings: Iterable, *, fail_on: str | None, unknown_severity: str = "fail",
         ignore: Iterable[str] = ()) -> tuple[list, list]:
    """``(failing, ignored)``: the findings at or above ``fail_on`` (any finding when None),
    and those left out by ``ignore`` (advisory ids or aliases, case-insensitive).

    "unknown" severity fails every threshold unless ``unknown_severity == "ignore"`` (most
    PyPA advisories carry no CVSS: an unscored RCE must not pass a gate). Findings are
    :class:`AdhocFinding` objects or scan_project's finding dicts.
    """
    ignored_ids = {i.strip().casefold() for i in ignore if i.strip()}
    threshold = SEVERITY_RANK[fail_on] if fail_on else None
    failing, ignored = [], []
    for finding in findings:
        data = finding if isinstance(finding, dict) else finding.as_dict()
        ids = {data["advisory"], *(data.get("aliases") or ())}
        if ignored_ids & {i.casefold() for i in ids}:
            ignored.append(finding)
            continue
        severity = data.get("severity") or "unknown"
        if severity == "unknown":
            if unknown_severity != "ignore":
                failing.append(finding)
        elif threshold is None or SEVERITY_RANK.get(severity, 0) >= threshold:
            failing.append(finding)
    return failing, ignored
