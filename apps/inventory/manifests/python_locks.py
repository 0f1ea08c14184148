"""Parse Python lock files: ``poetry.lock``, ``pdm.lock``, ``uv.lock`` and ``Pipfile.lock``.

Lock files list exact versions, so every entry is pinned and its specifier is
``==<version>``. Which entries are *direct* comes from the project's own
declaration next to the lock:

* poetry.lock: direct when the sibling pyproject.toml names the package
  (Poetry dependency tables or PEP 621/735 lists), transitive otherwise. With no
  readable sibling pyproject.toml there is nothing to tell them apart, so all
  entries are reported direct rather than silently hiding top-level packages.
* pdm.lock (lock_version 3.x and 4.x, https://pdm-project.org/en/latest/usage/lockfile/):
  every ``[[package]]`` is pinned at its ``version``; direct when the sibling
  pyproject.toml names it (PEP 621 lists, PEP 735 groups, ``[tool.pdm.dev-dependencies]``),
  all direct without a readable pyproject.toml. Hashes come from the entry's ``files``
  (4.3 and later) or from ``[metadata.files]`` keyed ``"name version"`` (3.x to 4.2).
  PDM writes a package installed with extras as a second entry of the same name and
  version with ``extras = [...]``: both become one dependency carrying the extras.
  ``marker`` (4.4+, ``inherit_metadata``) is kept; ``groups`` (4.4+), like Poetry's
  category and Pipfile's ``develop``, is not stored: dev-only packages are dependencies too.
  Entries with a ``path`` (local folders or archives, usually the project's own editable
  plugins) are not PyPI distributions and are skipped, as ``-e .`` is in requirements
  files; ``git`` entries keep their version.
* uv.lock: entries whose source is ``editable``/``virtual`` are the project's own
  workspace members (the root has ``editable = "."``) and are skipped; direct
  means listed in a member's ``dependencies``, ``optional-dependencies`` or
  ``dev-dependencies``. Without any member, all entries are direct.
* Pipfile.lock: every section except ``_meta`` (``default``, ``develop`` and
  pipenv's custom categories); direct when the sibling ``Pipfile`` lists the
  package, or always when there is no readable Pipfile.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

from .discovery import PDM_LOCK, PIPFILE_LOCK, POETRY_LOCK, UV_LOCK
from .lines import TomlPositions, json_container_lines, toml_positions
from .pyproject import declared_names, load_toml
from .records import (
    PYPI,
    ManifestError,
    ParsedDependency,
    ParsedManifest,
    load_json,
    normalise_name,
    read_text,
    relative_posix,
)


def _sibling_toml(path: Path) -> dict[str, Any] | None:
    """A TOML file next to a lock, or None when absent or unreadable."""
    try:
        return tomllib.loads(read_text(path))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError):
        return None


def _hashes(files: Any) -> tuple[str, ...]:
    """``hash`` values of a list of ``{file/url = ..., hash = "sha256:..."}`` tables."""
    if not isinstance(files, list):
        return ()
    return tuple(f["hash"] for f in files if isinstance(f, dict) and isinstance(f.get("hash"), str))


def _lock_dependency(name: str, version: Any, rel: str, line: int | None, direct: bool,
                     extras: tuple[str, ...] = (), marker: str = "",
                     hashes: tuple[str, ...] = ()) -> ParsedDependency:
    pinned = str(version) if isinstance(version, str) and version else None
    return ParsedDependency(
        PYPI, name, normalise_name(PYPI, name), pinned, f"=={pinned}" if pinned else "",
        rel, line, direct, extras, marker, hashes)


def _packages(data: dict[str, Any], rel: str, errors: list[ManifestError]) -> list[dict]:
    packages = data.get("package", [])
    if not isinstance(packages, list):
        errors.append(ManifestError(rel, None, "'package' must be an array of tables"))
        return []
    return packages


def _named_packages(lines: TomlPositions, packages: list, rel: str,
                    errors: list[ManifestError]) -> Iterator[tuple[int | None, str, dict]]:
    """``(line, name, table)`` of each ``[[package]]``; an entry without a name is an error."""
    for position, package in enumerate(packages):
        line = lines.key_lines.get(("package", position, "name"))
        name = package.get("name") if isinstance(package, dict) else None
        if not isinstance(name, str) or not name:
            errors.append(ManifestError(rel, line, "package entry without a name"))
            continue
        yield line, name, package


def _resolved_packages(
        lines: TomlPositions, data: dict[str, Any], rel: str, errors: list[ManifestError],
        declared: set[str] | None, *, marker_key: str,
        legacy_key: Callable[[str, Any], str | None],
) -> Iterator[tuple[dict, ParsedDependency]]:
    """poetry.lock's and pdm.lock's ``[[package]]`` entries, which share a layout, each with
    its dependency: pinned at ``version``, hashes from the entry's ``files`` or, in older
    locks, from ``[metadata.files]`` under ``legacy_key(name, version)``, a string marker
    under ``marker_key``, direct when ``declared`` (None: unknown, all direct) names it."""
    metadata = data.get("metadata")
    legacy_files = metadata.get("files") if isinstance(metadata, dict) else None
    if not isinstance(legacy_files, dict):
        legacy_files = {}
    for line, name, package in _named_packages(lines, _packages(data, rel, errors), rel,
                                               errors):
        version = package.get("version")
        files = package.get("files")
        if files is None:
            files = legacy_files.get(legacy_key(name, version))
        marker = package.get(marker_key)
        direct = True if declared is None else normalise_name(PYPI, name) in declared
        yield package, _lock_dependency(name, version, rel, line, direct,
                                        marker=marker if isinstance(marker, str) else "",
                                        hashes=_hashes(files))


def _poetry_files_key(name: str, _version: Any) -> str:
    return name


def _pdm_files_key(name: str, version: Any) -> str | None:
    return f"{name} {version}" if isinstance(version, str) else None


def parse_poetry_lock(root: Path, path: Path) -> ParsedManifest:
    """Parse a poetry.lock (Poetry 1.x and 2.x lock formats)."""
    loaded = load_toml(root, path, POETRY_LOCK)
    if isinstance(loaded, ParsedManifest):
        return loaded
    text, data = loaded
    rel = relative_posix(root, path)
    errors: list[ManifestError] = []
    pyproject = _sibling_toml(path.parent / "pyproject.toml")
    declared = declared_names(pyproject) if pyproject is not None else None
    # Poetry < 1.2 kept hashes in [metadata.files], keyed by package name. Poetry 2 writes
    # markers per package: a string is kept, a table (one marker per group) is not.
    lines = toml_positions(text, strings=False)
    deps = [dep for _, dep in _resolved_packages(lines, data, rel, errors, declared,
                                                 marker_key="markers",
                                                 legacy_key=_poetry_files_key)]
    return ParsedManifest(rel, POETRY_LOCK, deps, errors)


def _pdm_declared(pyproject: dict[str, Any]) -> set[str]:
    """Names a pyproject.toml asks for, plus PDM's legacy ``[tool.pdm.dev-dependencies]``."""
    names = declared_names(pyproject)
    tool = pyproject.get("tool")
    pdm = tool.get("pdm") if isinstance(tool, dict) else None
    groups = pdm.get("dev-dependencies") if isinstance(pdm, dict) else None
    for items in groups.values() if isinstance(groups, dict) else []:
        for item in items if isinstance(items, list) else []:
            if not isinstance(item, str) or item.lstrip().startswith("-"):
                continue  # "-e file:///${PROJECT_ROOT}/sub#egg=sub": a local project
            try:
                names.add(normalise_name(PYPI, Requirement(item).name))
            except InvalidRequirement:
                continue
    return names


def parse_pdm_lock(root: Path, path: Path) -> ParsedManifest:
    """Parse a pdm.lock (lock_version 3.x and 4.x)."""
    loaded = load_toml(root, path, PDM_LOCK)
    if isinstance(loaded, ParsedManifest):
        return loaded
    text, data = loaded
    rel = relative_posix(root, path)
    errors: list[ManifestError] = []
    lines = toml_positions(text, strings=False)
    metadata = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
    version = metadata.get("lock_version")
    if isinstance(version, str) and version.split(".")[0] not in ("3", "4"):
        # Older formats (lock_version 2, "sections") are PDM 1.x; newer majors may move keys.
        errors.append(ManifestError(rel, lines.key_lines.get(("metadata", "lock_version")),
                                    f"lock_version {version} is not 3.x or 4.x; "
                                    f"read as 4.x"))
    pyproject = _sibling_toml(path.parent / "pyproject.toml")
    declared = _pdm_declared(pyproject) if pyproject is not None else None
    merged: dict[tuple[str, str], ParsedDependency] = {}
    for package, dep in _resolved_packages(lines, data, rel, errors, declared,
                                           marker_key="marker", legacy_key=_pdm_files_key):
        if "path" in package:
            continue  # a local folder or archive, not a PyPI distribution
        extras = package.get("extras")
        extras = tuple(sorted(str(e) for e in extras)) if isinstance(extras, list) else ()
        key = (dep.normalised_name, dep.version or "")
        first = merged.get(key)
        if first is None:
            merged[key] = replace(dep, extras=extras)
        else:  # the "name[extra]" entry of a package already listed: one dependency
            merged[key] = replace(first, extras=tuple(sorted({*first.extras, *extras})),
                                  hashes=first.hashes or dep.hashes)
    return ParsedManifest(rel, PDM_LOCK, list(merged.values()), errors)


def _is_member(package: dict[str, Any]) -> bool:
    source = package.get("source")
    return isinstance(source, dict) and ("editable" in source or "virtual" in source)


def _edge_names(value: Any) -> set[str]:
    """Names from uv's ``[{ name = "x" }, ...]`` lists (or a table of such lists)."""
    lists = value.values() if isinstance(value, dict) else [value]
    return {normalise_name(PYPI, edge["name"]) for edges in lists if isinstance(edges, list)
            for edge in edges if isinstance(edge, dict) and isinstance(edge.get("name"), str)}


def parse_uv_lock(root: Path, path: Path) -> ParsedManifest:
    """Parse a uv.lock (``version = 1``, any ``revision``)."""
    loaded = load_toml(root, path, UV_LOCK)
    if isinstance(loaded, ParsedManifest):
        return loaded
    text, data = loaded
    rel = relative_posix(root, path)
    errors: list[ManifestError] = []
    packages = _packages(data, rel, errors)
    members = [p for p in packages if isinstance(p, dict) and _is_member(p)]
    direct_names: set[str] = set()
    for member in members:
        for key in ("dependencies", "optional-dependencies", "dev-dependencies"):
            direct_names |= _edge_names(member.get(key))
    deps: list[ParsedDependency] = []
    lines = toml_positions(text, strings=False)
    for line, name, package in _named_packages(lines, packages, rel, errors):
        if _is_member(package):
            continue  # the project itself (or a workspace member), not a dependency
        sdist = package.get("sdist")
        hashes = _hashes([sdist] if isinstance(sdist, dict) else []) + _hashes(
            package.get("wheels"))
        direct = not members or normalise_name(PYPI, name) in direct_names
        deps.append(_lock_dependency(name, package.get("version"), rel, line, direct,
                                     hashes=hashes))
    return ParsedManifest(rel, UV_LOCK, deps, errors)


def _pipfile_names(path: Path) -> set[str] | None:
    """Names declared in a Pipfile: ``[packages]``, ``[dev-packages]`` and custom categories."""
    pipfile = _sibling_toml(path)
    if pipfile is None:
        return None
    names: set[str] = set()
    for section, body in pipfile.items():
        if section in ("source", "requires", "pipenv", "scripts") or not isinstance(body, dict):
            continue
        names.update(normalise_name(PYPI, name) for name in body)
    return names


def parse_pipfile_lock(root: Path, path: Path) -> ParsedManifest:
    """Parse a Pipfile.lock (pipfile-spec 6)."""
    loaded = load_json(root, path, PIPFILE_LOCK)
    if isinstance(loaded, ParsedManifest):
        return loaded
    text, data = loaded
    rel = relative_posix(root, path)
    declared = _pipfile_names(path.parent / "Pipfile")
    lines = json_container_lines(text)
    deps: list[ParsedDependency] = []
    errors: list[ManifestError] = []
    for section, entries in data.items():
        if section.startswith("_") or not isinstance(entries, dict):
            continue
        for name, entry in entries.items():
            line = lines.get((section, name))
            if not isinstance(entry, dict):
                errors.append(ManifestError(rel, line, f"entry for {name} is not an object"))
                continue
            spec = entry.get("version")
            # Locked versions are written "==X"; VCS/path entries have none.
            version = spec[2:] if isinstance(spec, str) and spec.startswith("==") else None
            extras = entry.get("extras", [])
            marker = entry.get("markers", "")
            hashes = entry.get("hashes", [])
            direct = True if declared is None else normalise_name(PYPI, name) in declared
            deps.append(ParsedDependency(
                PYPI, name, normalise_name(PYPI, name), version,
                spec if isinstance(spec, str) else "", rel, line, direct,
                tuple(sorted(map(str, extras))) if isinstance(extras, list) else (),
                marker if isinstance(marker, str) else "",
                tuple(map(str, hashes)) if isinstance(hashes, list) else ()))
    return ParsedManifest(rel, PIPFILE_LOCK, deps, errors)
