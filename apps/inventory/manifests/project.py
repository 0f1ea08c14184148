"""Entry points: parse one manifest, or discover and parse a whole project."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from .discovery import (
    CONSTRAINTS,
    CYCLONEDX,
    NPM_LOCK,
    PDM_LOCK,
    PIPFILE_LOCK,
    POETRY_LOCK,
    PYPROJECT,
    REQUIREMENTS,
    UV_LOCK,
    discover,
    manifest_kind,
)
from .globs import selected
from .npm import parse_package_lock
from .pyproject import parse_pyproject
from .python_locks import parse_pdm_lock, parse_pipfile_lock, parse_poetry_lock, parse_uv_lock
from .records import (
    ManifestError,
    ParsedManifest,
    ScanLimits,
    limits,
    relative_posix,
    scan_limits,
    too_many_dependencies,
)
from .requirements import (
    ConstraintsTree,
    parse_constraints,
    parse_constraints_tree,
    parse_requirements,
    parse_requirements_tree,
)
from .sbom import parse_cyclonedx

Parser = Callable[[Path, Path], ParsedManifest]

PARSERS: dict[str, Parser] = {
    REQUIREMENTS: parse_requirements,
    CONSTRAINTS: parse_constraints,
    PDM_LOCK: parse_pdm_lock,
    POETRY_LOCK: parse_poetry_lock,
    PIPFILE_LOCK: parse_pipfile_lock,
    UV_LOCK: parse_uv_lock,
    PYPROJECT: parse_pyproject,
    NPM_LOCK: parse_package_lock,
    CYCLONEDX: parse_cyclonedx,
}


def _kind_for(root: Path, path: Path) -> str | None:
    """Kind by name; explicitly requested ``.txt``/``.json`` files get the generic parsers."""
    try:
        relative = path.relative_to(root)
    except ValueError:
        relative = Path(path.name)
    kind = manifest_kind(relative)
    if kind is None and path.suffix.lower() == ".txt":
        kind = REQUIREMENTS  # e.g. a constraints.txt passed on purpose
    elif kind is None and path.suffix.lower() == ".json":
        kind = CYCLONEDX  # the parser reports it when bomFormat is not CycloneDX
    return kind


def parse_manifest(root: Path, path: Path) -> ParsedManifest:
    """Parse one manifest (``path`` absolute or relative to ``root``); never raises.

    Unexpected failures are reported as a ManifestError rather than propagated,
    so one odd file cannot stop a project scan.
    """
    root, path = Path(root), Path(path)
    if not path.is_absolute() and not path.is_relative_to(root):
        path = root / path  # relative to the project root
    kind = _kind_for(root, path)
    rel = relative_posix(root, path)
    if kind is None:
        return ParsedManifest(rel, "unknown", [], [
            ManifestError(rel, None, "not a recognised dependency manifest")])
    try:
        return _within_limits(PARSERS[kind](root, path))
    except Exception as exc:  # a parser bug must not abort the whole scan
        return ParsedManifest(rel, kind, [], [
            ManifestError(rel, None, f"internal error while parsing: {exc!r}")],
            unread=(rel,))


def _within_limits(manifest: ParsedManifest) -> ParsedManifest:
    """Apply the per-manifest caps to a parser's result (the JSON and TOML parsers hold the
    whole document anyway; the requirements parser stops early by itself)."""
    caps = limits()
    if len(manifest.dependencies) > caps.max_dependencies:
        return too_many_dependencies(manifest.path, manifest.kind,
                                     f"{len(manifest.dependencies):,}")
    if len(manifest.errors) > caps.max_errors + 1:
        unlisted = len(manifest.errors) - caps.max_errors
        return ParsedManifest(manifest.path, manifest.kind, manifest.dependencies, [
            *manifest.errors[:caps.max_errors],
            ManifestError(manifest.path, None, f"{unlisted:,} more errors not listed")],
            manifest.unread)
    return manifest


def _over_project_cap(manifest: ParsedManifest, total: int) -> ParsedManifest:
    cap = limits().max_project_dependencies
    return ParsedManifest(manifest.path, manifest.kind, [], [ManifestError(
        manifest.path, None,
        f"{len(manifest.dependencies):,} more dependencies would pass the project's cap of "
        f"{cap:,} ({total:,} already found; SCAN_MAX_PROJECT_DEPENDENCIES); manifest skipped")],
        unread=tuple(sorted({manifest.path, *manifest.unread,
                             *(d.manifest_path for d in manifest.dependencies)})))


def select_manifests(root: Path, paths: Sequence[Path], include: Sequence[str] = (),
                     exclude: Sequence[str] = ()) -> tuple[list[Path], list[str]]:
    """Split discovered manifests into those to read and the excluded ones (their paths
    relative to ``root``), by the project's glob patterns (:mod:`.globs`)."""
    if not include and not exclude:
        return list(paths), []
    kept: list[Path] = []
    excluded: list[str] = []
    for path in paths:
        rel = Path(path).relative_to(root).as_posix()
        if selected(rel, include, exclude):
            kept.append(path)
        else:
            excluded.append(rel)
    return kept, excluded


def parse_project(root: Path, caps: ScanLimits | None = None, *,
                  include: Sequence[str] = (), exclude: Sequence[str] = (),
                  excluded: list[str] | None = None) -> list[ParsedManifest]:
    """Discover and parse every manifest under ``root``, in discovery order, within ``caps``
    (default :class:`ScanLimits`): past ``max_manifests`` manifests, and from the manifest
    that would take the project past ``max_project_dependencies``, manifests are skipped
    with an error each (and their previous dependencies kept by the scan).

    ``include``/``exclude`` are the project's glob patterns on manifest paths relative to
    ``root``: a manifest matching no include pattern (when there are any) or any exclude
    pattern is not read, and its path is appended to ``excluded`` when a list is given.
    A file read through the ``-r``/``-c`` of a manifest that is read is part of that
    manifest, whatever the patterns say (pip reads it too).

    A requirements file read through another discovered requirements file's
    ``-r``/``-c`` is not reported again on its own (its dependencies already
    appear, with their own path, in the including file's result). Files that
    only include each other in a cycle are reported once, from the first, and a
    symlink to a requirements file already reported is not reported again.
    A constraints file found on its own (``constraints*.txt``, read through no ``-c``)
    gives the pins of the packages the project's other manifests require.
    """
    with scan_limits(caps or limits()):
        paths, left_out = select_manifests(Path(root), discover(Path(root)), include, exclude)
        if excluded is not None:
            excluded.extend(left_out)
        return _parse_project(Path(root), paths)


def _parse_project(root: Path, paths: list[Path]) -> list[ParsedManifest]:
    caps = limits()
    over = paths[caps.max_manifests:]
    paths = paths[:caps.max_manifests]
    trees: dict[Path, tuple[ParsedManifest, frozenset[Path]]] = {}
    constraint_trees: dict[Path, ConstraintsTree] = {}
    for path in paths:
        kind = _kind_for(root, path)
        try:
            if kind == REQUIREMENTS:
                trees[path] = parse_requirements_tree(root, path)
            elif kind == CONSTRAINTS:
                constraint_trees[path] = parse_constraints_tree(root, path)
        except Exception:  # noqa: S112 (reported by parse_manifest below)
            continue
    pulled_in: set[Path] = set()
    for _, included in trees.values():
        pulled_in |= included
    for tree in constraint_trees.values():
        pulled_in |= tree.included
    covered: set[Path] = set()
    pending: dict[Path, ParsedManifest] = {}
    # Roots of the include graph first, then files only reachable through a cycle;
    # "covered" also stops a symlinked alias of a file being reported twice.
    for roots_only in (True, False):
        for path, (manifest, included) in trees.items():
            resolved = path.resolve()
            if resolved in covered or (roots_only and resolved in pulled_in):
                continue
            pending[path] = manifest
            covered |= included | {resolved}
    # None: a constraints file, whose dependencies depend on what the others require.
    parsed: dict[Path, ParsedManifest | None] = {}
    for path in paths:
        if path in trees:
            if path in pending:
                parsed[path] = _within_limits(pending[path])
        elif path in constraint_trees:
            if path.resolve() not in pulled_in | covered:
                parsed[path] = None
        else:
            parsed[path] = parse_manifest(root, path)
    # What the project requires, by name: the packages its requirements files and
    # pyproject.toml ask for (locks and SBOMs list what is installed, not what is asked).
    required = {d.normalised_name for manifest in parsed.values() if manifest is not None
                and manifest.kind in (REQUIREMENTS, PYPROJECT) for d in manifest.dependencies}
    results: list[ParsedManifest] = []
    total = 0
    for path, manifest in parsed.items():
        if manifest is None:
            manifest = _within_limits(constraint_trees[path].manifest(required))
        if total + len(manifest.dependencies) > caps.max_project_dependencies:
            manifest = _over_project_cap(manifest, total)
        total += len(manifest.dependencies)
        results.append(manifest)
    for path in over:
        if path.resolve() in pulled_in:
            continue  # already read through an include of a manifest within the cap
        rel = relative_posix(root, path)
        results.append(ParsedManifest(rel, _kind_for(root, path) or "unknown", [], [ManifestError(
            rel, None, f"more than {caps.max_manifests:,} manifests in the project "
                       f"(SCAN_MAX_MANIFESTS); not read")], unread=(rel,)))
    return results
