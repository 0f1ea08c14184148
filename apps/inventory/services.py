"""Writes on projects and their dependencies, and the scan that raises APVs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import structlog
from django.db import transaction
from django.utils import timezone

from apps.advisories.selectors import AffectedIndex
from apps.inventory.errors import ProjectInvalid, ScanFailed
from apps.inventory.git import GitError, check_working_copy, exported_tree
from apps.inventory.manifests import ParsedDependency, parse_project
from apps.inventory.models import Dependency, Project
from apps.reviews.services import Exposure, SyncResult, apvs_sync_for_project

log = structlog.get_logger(__name__)


@transaction.atomic
def project_add(*, name: str, path: str, default_branch: str = "main",
                description: str = "", created_by=None) -> Project:
    """Register a git working copy; refused unless the path and branch really exist."""
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
                                  description=description, created_by=created_by)


@dataclass
class ScanResult:
    project: Project
    commit: str
    manifests: list[str]
    dependencies: int
    pinned: int
    errors: list[dict] = field(default_factory=list)
    apvs: SyncResult | None = None


def _dependency_key(dep: ParsedDependency) -> tuple[str, str, str, str]:
    return (dep.manifest_path, dep.ecosystem, dep.normalised_name, dep.version or "")


def _dependencies_sync(project: Project, parsed: list[ParsedDependency]) -> list[Dependency]:
    """Upsert this scan's dependencies; those it no longer finds are marked not present."""
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
    gone = [row.pk for key, row in existing.items() if key not in current and row.present]
    Dependency.objects.filter(pk__in=gone).update(present=False, updated_at=now)
    return list(current.values())


def exposures_for(dependencies: list[Dependency]) -> list[Exposure]:
    """Match pinned dependencies against live advisories (OSV evaluation rules)."""
    pinned = [d for d in dependencies if d.version]
    index = AffectedIndex((d.ecosystem, d.normalised_name) for d in pinned)
    return [
        Exposure(dependency=dep, advisory=advisory, fixed_in=fixed)
        for dep in pinned
        for advisory, fixed in index.matches(dep.ecosystem, dep.normalised_name, dep.version)
    ]


def project_scan(*, project: Project) -> ScanResult:
    """Parse the default branch's manifests, refresh dependencies, raise/resolve APVs."""
    try:
        commit = check_working_copy(project.path, project.default_branch)
        with exported_tree(project.path, commit) as tree:
            manifests = parse_project(tree)
    except GitError as exc:
        raise ScanFailed(f"Cannot read {project.name}: {exc}",
                         details={"project": project.name}) from exc
    parsed = [dep for manifest in manifests for dep in manifest.dependencies]
    errors = [
        {"manifest": e.manifest_path, "line": e.line, "reason": e.reason}
        for manifest in manifests for e in manifest.errors
    ]
    with transaction.atomic():
        dependencies = _dependencies_sync(project, parsed)
        apvs = apvs_sync_for_project(project=project, exposures=exposures_for(dependencies))
        project.last_scanned_at = timezone.now()
        project.last_scanned_commit = commit
        project.last_scan_errors = errors[:500]
        project.save(update_fields=["last_scanned_at", "last_scanned_commit",
                                    "last_scan_errors", "updated_at"])
    log.info("project.scanned", project=project.name, commit=commit[:12],
             dependencies=len(dependencies), errors=len(errors))
    return ScanResult(
        project=project, commit=commit, manifests=[m.path for m in manifests],
        dependencies=len(dependencies), pinned=sum(1 for d in dependencies if d.version),
        errors=errors, apvs=apvs,
    )
