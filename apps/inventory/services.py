"""Writes on projects and their dependencies, and the scan that raises APVs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.advisories.selectors import AffectedIndex
from apps.inventory.errors import ProjectInvalid, ScanFailed
from apps.inventory.git import GitError, SkippedEntry, check_working_copy, exported_tree
from apps.inventory.hooks import Exposure, dependencies_scanned
from apps.inventory.manifests import ParsedDependency, ParsedManifest, parse_project
from apps.inventory.manifests.globs import InvalidPattern, clean_patterns
from apps.inventory.manifests.records import ScanLimits
from apps.inventory.models import Dependency, Project, ScanStatus

log = structlog.get_logger(__name__)


def _patterns(value, field: str) -> list[str]:
    try:
        return clean_patterns(value, field=field)
    except InvalidPattern as exc:
        raise ProjectInvalid(str(exc), details={field: str(exc)}) from exc


@transaction.atomic
def project_add(*, name: str, path: str, default_branch: str = "main",
                description: str = "", created_by=None,
                manifest_include: list[str] | None = None,
                manifest_exclude: list[str] | None = None) -> Project:
    """Register a git working copy; refused unless the path and branch really exist.

    ``manifest_include``/``manifest_exclude``: glob patterns on manifest paths relative to
    the repository root (docs/apv.md, "Manifests").
    """
    include = _patterns(manifest_include, "manifest_include")
    exclude = _patterns(manifest_exclude, "manifest_exclude")
    name = name.strip()
    if not name:
        raise ProjectInvalid("A project needs a name.", details={"name": "required"})
    if Project.objects.filter(name=name).exists():
        raise ProjectInvalid(f"A project named {name!r} already exists.",
                             details={"name": "taken"})
    resolved = str(Path(path).expanduser().resolve())
    try:
        check_working_copy(resolved, default_branch)
    except GitError as exc:
        raise ProjectInvalid(str(exc), details={"path": resolved, "branch": default_branch}) \
            from exc
    return Project.objects.create(name=name, path=resolved, default_branch=default_branch,
                                  description=description, created_by=created_by,
                                  manifest_include=include, manifest_exclude=exclude)


@transaction.atomic
def project_update(*, project: Project, description: str | None = None,
                   manifest_include: list[str] | None = None,
                   manifest_exclude: list[str] | None = None,
                   service: dict[str, str] | None = None) -> Project:
    """Change what a project scans; ``None`` leaves a field as it is. The next scan applies
    the patterns (dependencies of manifests now excluded are then no longer present).
    ``service`` sets how wargaming starts and checks the project's service
    (``service_command``, ``service_ready_path``, ``test_command``)."""
    fields = []
    for name, value in (service or {}).items():
        if name not in ("service_command", "service_ready_path", "test_command"):
            raise ProjectInvalid(f"unknown service field {name!r}", details={name: "unknown"})
        setattr(project, name, value)
        fields.append(name)
    if description is not None:
        project.description = description
        fields.append("description")
    if manifest_include is not None:
        project.manifest_include = _patterns(manifest_include, "manifest_include")
        fields.append("manifest_include")
    if manifest_exclude is not None:
        project.manifest_exclude = _patterns(manifest_exclude, "manifest_exclude")
        fields.append("manifest_exclude")
    if fields:
        project.save(update_fields=[*fields, "updated_at"])
    return project


@dataclass
class ScanResult:
    project: Project
    commit: str
    manifests: list[str]
    dependencies: int
    pinned: int
    errors: list[dict] = field(default_factory=list)
    #: What the APVs did (reviews' SyncResult, the answer to ``dependencies_scanned``).
    apvs: Any = None
    status: str = ScanStatus.OK
    #: Manifests (paths in the repository) the project's include/exclude patterns left out.
    excluded: list[str] = field(default_factory=list)


#: Errors kept on the project and returned by a scan; past it they are counted.
MAX_STORED_ERRORS = 500
#: Longest reason and path kept per error (a manifest can put anything in a name).
_MAX_REASON = 500
_MAX_PATH = 1000


def scan_limits() -> ScanLimits:
    return ScanLimits(
        max_manifest_bytes=settings.SCAN_MAX_MANIFEST_BYTES,
        max_dependencies=settings.SCAN_MAX_DEPENDENCIES,
        max_project_dependencies=settings.SCAN_MAX_PROJECT_DEPENDENCIES,
        max_manifests=settings.SCAN_MAX_MANIFESTS,
    )


def _storable(text: str) -> bool:
    """PostgreSQL text and jsonb refuse NUL, and UTF-8 cannot encode a lone surrogate (JSON's
    ``"\\ud800"`` escape gives one)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(text: str, limit: int) -> str:
    """Text safe to store and show: control characters and lone surrogates escaped, cut."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def scan_error(reason: str, *, path: str = "", line: int | None = None,
               stage: str = "manifest") -> dict:
    """One entry of ``last_scan_errors`` (and of the scan API's ``errors``)."""
    return {"manifest": _printable(path, _MAX_PATH), "line": line,
            "reason": _printable(reason, _MAX_REASON), "stage": stage}


def _capped(errors: list[dict]) -> list[dict]:
    if len(errors) <= MAX_STORED_ERRORS:
        return errors
    more = len(errors) - (MAX_STORED_ERRORS - 1)
    return [*errors[:MAX_STORED_ERRORS - 1],
            scan_error(f"{more:,} more errors not stored", stage="scan")]


def _unstorable(dep: ParsedDependency) -> str | None:
    """Why a parsed dependency cannot be stored as a row, or None."""
    for label, value, limit in (("name", dep.name, 300), ("name", dep.normalised_name, 300),
                                ("version", dep.version or "", 200),
                                ("manifest path", dep.manifest_path, 1000)):
        if len(value) > limit:
            return f"{label} longer than {limit} characters"
        if not _storable(value):
            return f"{label} contains a NUL byte or invalid text"
    for value in (dep.specifier, dep.marker, *dep.extras, *dep.hashes):
        if not isinstance(value, str) or not _storable(value):
            return "specifier, marker, extras or hashes contain a NUL byte or invalid text"
    return None


def _dependency_key(dep: ParsedDependency) -> tuple[str, str, str, str]:
    return (dep.manifest_path, dep.ecosystem, dep.normalised_name, dep.version or "")


def _dependencies_sync(project: Project, parsed: list[ParsedDependency],
                       unread: frozenset[str] = frozenset()) -> list[Dependency]:
    """Upsert this scan's dependencies; those it no longer finds are marked not present,
    except in the manifests it could not read (``unread``): those keep their rows, and the
    present ones count as found (an unreadable file is no evidence of a removed pin)."""
    now = timezone.now()
    existing = {
        (d.manifest_path, d.ecosystem, d.normalised_name, d.version): d
        for d in Dependency.objects.filter(project=project)
    }
    current: dict[tuple, Dependency] = {}
    to_create, to_update = [], []
    for dep in parsed:
        key = _dependency_key(dep)
        if key in current:
            continue  # the same pin twice in one manifest (e.g. per marker): first line wins
        fields = {
            "name": dep.name, "specifier": dep.specifier[:500], "line": dep.line,
            "direct": dep.direct, "extras": list(dep.extras), "marker": dep.marker[:500],
            "hashes": list(dep.hashes), "present": True,
        }
        row = existing.get(key)
        if row is None:
            row = Dependency(project=project, manifest_path=key[0], ecosystem=key[1],
                             normalised_name=key[2], version=key[3], **fields)
            to_create.append(row)
        else:
            for attr, value in fields.items():
                setattr(row, attr, value)
            row.updated_at = now
            to_update.append(row)
        current[key] = row
    Dependency.objects.bulk_create(to_create, batch_size=500)
    if to_create and to_create[0].pk is None:
        ids = {(d.manifest_path, d.ecosystem, d.normalised_name, d.version): d.pk
               for d in Dependency.objects.filter(project=project)}
        for row in to_create:
            row.pk = ids[(row.manifest_path, row.ecosystem, row.normalised_name, row.version)]
    Dependency.objects.bulk_update(
        to_update, fields=["name", "specifier", "line", "direct", "extras", "marker", "hashes",
                           "present", "updated_at"], batch_size=500)
    kept = [row for key, row in existing.items()
            if key not in current and row.present and key[0] in unread]
    gone = [row.pk for key, row in existing.items()
            if key not in current and row.present and key[0] not in unread]
    Dependency.objects.filter(pk__in=gone).update(present=False, updated_at=now)
    return [*current.values(), *kept]


def exposures_for(dependencies: list[Dependency]) -> list[Exposure]:
    """Match pinned dependencies against live advisories (OSV evaluation rules)."""
    pinned = [d for d in dependencies if d.version]
    index = AffectedIndex((d.ecosystem, d.normalised_name) for d in pinned)
    return [
        Exposure(dependency=dep, advisory=advisory, fixed_in=fixed)
        for dep in pinned
        for advisory, fixed in index.matches(dep.ecosystem, dep.normalised_name, dep.version)
    ]


def _record_failure(project: Project, attempted_at, reason: str) -> None:
    project.last_scan_status = ScanStatus.FAILED
    project.last_scan_attempted_at = attempted_at
    project.last_scan_errors = [scan_error(reason, stage="repository")]
    project.save(update_fields=["last_scan_status", "last_scan_attempted_at",
                                "last_scan_errors", "updated_at"])


def _manifest_errors(manifests: list[ParsedManifest]) -> list[dict]:
    return [scan_error(e.reason, path=e.manifest_path, line=e.line)
            for manifest in manifests for e in manifest.errors]


def _tree_errors(skipped: list[SkippedEntry]) -> list[dict]:
    return [scan_error(f"not scanned: {entry.reason}", path=entry.path, stage="tree")
            for entry in skipped]


def _storable_dependencies(manifests: list[ParsedManifest],
                           errors: list[dict]) -> list[ParsedDependency]:
    parsed = []
    for dep in (dep for manifest in manifests for dep in manifest.dependencies):
        reason = _unstorable(dep)
        if reason is None:
            parsed.append(dep)
        else:
            errors.append(scan_error(f"dependency skipped: {reason}", path=dep.manifest_path,
                                     line=dep.line))
    return parsed


def project_scan(*, project: Project) -> ScanResult:
    """Parse the default branch's manifests, refresh dependencies, raise/resolve APVs.

    Whatever the repository holds, the outcome is recorded on the project: entries and
    manifests it could not read are listed in ``last_scan_errors`` and the rest is scanned
    (status ``partial``); when nothing can be read (not a repository, no branch, git refuses
    the tree, a tree over SCAN_MAX_TREE_ENTRIES) the status is ``failed`` and ScanFailed is
    raised, with dependencies and APVs left as the last scan left them.
    """
    attempted_at = timezone.now()
    skipped: list[SkippedEntry] = []
    excluded: list[str] = []
    try:
        commit = check_working_copy(project.path, project.default_branch)
        with exported_tree(project.path, commit, skipped=skipped,
                           max_entries=settings.SCAN_MAX_TREE_ENTRIES,
                           max_file_bytes=settings.SCAN_MAX_MANIFEST_BYTES) as tree:
            manifests = parse_project(tree, scan_limits(),
                                      include=project.manifest_include or (),
                                      exclude=project.manifest_exclude or (),
                                      excluded=excluded)
    except Exception as exc:
        if isinstance(exc, GitError):
            reason = f"Cannot read {project.name}: {exc}"
        else:  # a full disk, a bug: still recorded, and still no 500
            log.exception("project.scan_crashed", project=project.name)
            reason = f"Cannot scan {project.name}: internal error ({exc.__class__.__name__})"
        _record_failure(project, attempted_at, reason)
        raise ScanFailed(reason, details={"project": project.name,
                                          "errors": project.last_scan_errors}) from exc
    errors = _tree_errors(skipped) + _manifest_errors(manifests)
    parsed = _storable_dependencies(manifests, errors)
    unread = frozenset(path for manifest in manifests for path in manifest.unread)
    errors = _capped(errors)
    status = ScanStatus.PARTIAL if errors else ScanStatus.OK
    with transaction.atomic():
        dependencies = _dependencies_sync(project, parsed, unread)
        apvs = dependencies_scanned.first(project=project,
                                          exposures=exposures_for(dependencies))
        project.last_scanned_at = timezone.now()
        project.last_scanned_commit = commit
        project.last_scan_errors = errors
        project.last_scan_status = status
        project.last_scan_attempted_at = attempted_at
        project.save(update_fields=["last_scanned_at", "last_scanned_commit",
                                    "last_scan_errors", "last_scan_status",
                                    "last_scan_attempted_at", "updated_at"])
    log.info("project.scanned", project=project.name, commit=commit[:12],
             dependencies=len(dependencies), errors=len(errors), status=status,
             excluded=len(excluded))
    return ScanResult(
        project=project, commit=commit, manifests=[m.path for m in manifests],
        dependencies=len(dependencies), pinned=sum(1 for d in dependencies if d.version),
        errors=errors, apvs=apvs, status=status, excluded=excluded,
    )
