"""Entry points: parse one manifest, or discover and parse a whole project."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .discovery import (
    CYCLONEDX,
    NPM_LOCK,
    PIPFILE_LOCK,
    POETRY_LOCK,
    PYPROJECT,
    REQUIREMENTS,
    UV_LOCK,
    discover,
    manifest_kind,
)
from .npm import parse_package_lock
from .pyproject import parse_pyproject
from .python_locks import parse_pipfile_lock, parse_poetry_lock, parse_uv_lock
from .records import ManifestError, ParsedManifest, relative_posix
from .requirements import parse_requirements, parse_requirements_tree
from .sbom import parse_cyclonedx

Parser = Callable[[Path, Path], ParsedManifest]

PARSERS: dict[str, Parser] = {
    REQUIREMENTS: parse_requirements,
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
        return PARSERS[kind](root, path)
    except Exception as exc:  # a parser bug must not abort the whole scan
        return ParsedManifest(rel, kind, [], [
            ManifestError(rel, None, f"internal error while parsing: {exc!r}")])


def parse_project(root: Path) -> list[ParsedManifest]:
    """Discover and parse every manifest under ``root``, in discovery order.

    A requirements file read through another discovered requirements file's
    ``-r``/``-c`` is not reported again on its own (its dependencies already
    appear, with their own path, in the including file's result). Files that
    only include each other in a cycle are reported once, from the first, and a
    symlink to a requirements file already reported is not reported again.
    """
    root = Path(root)
    paths = discover(root)
    trees: dict[Path, tuple[ParsedManifest, frozenset[Path]]] = {}
    for path in paths:
        if _kind_for(root, path) == REQUIREMENTS:
            try:
                trees[path] = parse_requirements_tree(root, path)
            except Exception:  # noqa: S112 (reported by parse_manifest below)
                continue
    pulled_in: set[Path] = set()
    for _, included in trees.values():
        pulled_in |= included
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
    results: list[ParsedManifest] = []
    for path in paths:
        if path in trees:
            if path in pending:
                results.append(pending[path])
        else:
            results.append(parse_manifest(root, path))
    return results
