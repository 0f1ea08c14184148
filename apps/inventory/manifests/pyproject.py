"""Parse ``pyproject.toml``: PEP 621 ``[project]`` and Poetry's ``[tool.poetry]`` tables.

* PEP 621 ``project.dependencies`` and ``project.optional-dependencies`` hold
  PEP 508 strings, parsed with ``packaging.requirements``; so do PEP 735
  ``[dependency-groups]`` (``{include-group = ...}`` entries are references,
  not packages, and are skipped). Only an exact ``==``/``===`` pin gets a version.
* Poetry's ``[tool.poetry.dependencies]``, ``[tool.poetry.dev-dependencies]``
  and ``[tool.poetry.group.<name>.dependencies]`` use Poetry's constraint
  syntax, where a bare version (``"1.2.3"``) or ``"==1.2.3"`` is an exact pin
  and ``^``/``~``/ranges/wildcards are not. ``python`` is the interpreter
  constraint, not a package, and is skipped. Under Poetry 2 a main-group
  entry for a package already listed in ``project.dependencies`` only adds
  Poetry-specific settings, so it is not recorded twice.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from packaging.markers import InvalidMarker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

from .discovery import PYPROJECT
from .lines import TomlPositions, toml_positions
from .pip_format import from_requirement
from .records import (
    PYPI,
    ManifestError,
    ParsedDependency,
    ParsedManifest,
    normalise_name,
    read_text,
    relative_posix,
    unreadable,
)


def load_toml(root: Path, path: Path, kind: str) -> tuple[str, dict[str, Any]] | ParsedManifest:
    """Read and parse a TOML file, or return the failed ParsedManifest explaining why."""
    try:
        text = read_text(path)
    except (OSError, UnicodeDecodeError) as exc:
        return unreadable(root, path, kind, exc)
    try:
        return text, tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as exc:  # RecursionError: nested too deep
        rel = relative_posix(root, path)
        reason = exc if isinstance(exc, tomllib.TOMLDecodeError) else "nested too deep"
        return ParsedManifest(rel, kind, [], [ManifestError(rel, None, f"invalid TOML: {reason}")],
                              unread=(rel,))


def toml_table(data: Any, *keys: str) -> dict[str, Any]:
    """``data[k1][k2]...`` when every step is a table, else an empty dict."""
    for key in keys:
        data = data.get(key) if isinstance(data, dict) else None
    return data if isinstance(data, dict) else {}


def poetry_dependency_tables(data: dict[str, Any]) -> list[tuple[tuple[str, ...], dict[str, Any]]]:
    """Poetry's dependency tables with their TOML paths: main, legacy dev, and groups."""
    poetry = toml_table(data, "tool", "poetry")
    tables = [
        (("tool", "poetry", "dependencies"), toml_table(poetry, "dependencies")),
        (("tool", "poetry", "dev-dependencies"), toml_table(poetry, "dev-dependencies")),
    ]
    for group, body in toml_table(poetry, "group").items():
        tables.append((("tool", "poetry", "group", group, "dependencies"),
                       toml_table(body, "dependencies")))
    return tables


def pep508_lists(data: dict[str, Any]) -> list[tuple[tuple[str, ...], Any]]:
    """Every PEP 508 string array with its TOML path (PEP 621 and PEP 735)."""
    project = toml_table(data, "project")
    arrays: list[tuple[tuple[str, ...], Any]] = []
    if "dependencies" in project:
        arrays.append((("project", "dependencies"), project["dependencies"]))
    for extra, items in toml_table(project, "optional-dependencies").items():
        arrays.append((("project", "optional-dependencies", extra), items))
    for group, items in toml_table(data, "dependency-groups").items():
        arrays.append((("dependency-groups", group), items))
    return arrays


def declared_names(data: dict[str, Any]) -> set[str]:
    """PEP 503 names of every package a pyproject.toml asks for by name."""
    names: set[str] = set()
    for _, items in pep508_lists(data):
        for item in items if isinstance(items, list) else []:
            try:
                names.add(normalise_name(PYPI, Requirement(item).name))
            except (InvalidRequirement, TypeError):
                continue
    for _, table in poetry_dependency_tables(data):
        names.update(normalise_name(PYPI, n) for n in table if n.lower() != "python")
    return names


_POETRY_EXACT = re.compile(r"\s*(?:==?\s*)?(?P<version>[^\s*]+)\s*")


def poetry_exact_span(constraint: str) -> tuple[int, int] | None:
    """Where the version is in a Poetry constraint that is an exact pin ("1.2.3",
    "==1.2.3", "=1.2.3"): a PEP 440 version; ``^``/``~``/ranges/wildcards are not pins."""
    match = _POETRY_EXACT.fullmatch(constraint)
    if not match:
        return None
    try:
        Version(match["version"])  # anything else (^1.2, ~1.2, >=1,<2) is a range
    except InvalidVersion:
        return None
    return match.start("version"), match.end("version")


def poetry_exact_version(constraint: str) -> str | None:
    """The version when a Poetry constraint is an exact pin (see :func:`poetry_exact_span`)."""
    span = poetry_exact_span(constraint)
    return constraint[span[0]:span[1]] if span else None


class _PyprojectParser:
    def __init__(self, rel: str, text: str, data: dict[str, Any]) -> None:
        self.rel = rel
        self.data = data
        self.lines: TomlPositions = toml_positions(text)
        self.deps: list[ParsedDependency] = []
        self.errors: list[ManifestError] = []

    def parse(self) -> ParsedManifest:
        pep621 = self._pep508()
        self._poetry(pep621)
        return ParsedManifest(self.rel, PYPROJECT, self.deps, self.errors)

    def _pep508(self) -> set[str]:
        main: set[str] = set()
        for path, items in pep508_lists(self.data):
            if not isinstance(items, list):
                self.errors.append(ManifestError(
                    self.rel, self.lines.key_lines.get(path), f"{'.'.join(path)} must be an array"))
                continue
            for position, item in enumerate(items):
                if isinstance(item, dict) and "include-group" in item:
                    continue  # PEP 735 reference to another group
                line = (self.lines.string_line((*path, position), item)
                        if isinstance(item, str) else None) or self.lines.key_lines.get(path)
                if not isinstance(item, str):
                    self.errors.append(ManifestError(self.rel, line, f"not a string: {item!r}"))
                    continue
                try:
                    info = from_requirement(Requirement(item), item)
                except (InvalidRequirement, InvalidMarker) as exc:
                    self.errors.append(ManifestError(self.rel, line, str(exc)))
                    continue
                if path == ("project", "dependencies"):
                    main.add(normalise_name(PYPI, info.name))
                self.deps.append(ParsedDependency(
                    PYPI, info.name, normalise_name(PYPI, info.name), info.version,
                    info.specifier, self.rel, line, True, info.extras, info.marker))
        return main

    def _poetry(self, pep621: set[str]) -> None:
        for path, table in poetry_dependency_tables(self.data):
            is_main = path == ("tool", "poetry", "dependencies")
            for name, value in table.items():
                normalised = normalise_name(PYPI, name)
                if normalised == "python" or (is_main and normalised in pep621):
                    continue
                line = self.lines.key_lines.get((*path, name))
                entries = value if isinstance(value, list) else [value]
                for entry in entries:
                    self._poetry_entry(name, normalised, entry, line)

    def _poetry_entry(self, name: str, normalised: str, entry: Any, line: int | None) -> None:
        extras: tuple[str, ...] = ()
        marker = ""
        if isinstance(entry, str):
            constraint = entry
        elif isinstance(entry, dict):
            # git/path/url sources have no "version": recorded unpinned.
            constraint = entry.get("version", "")
            extras_value = entry.get("extras", [])
            if isinstance(extras_value, list):
                extras = tuple(sorted(str(e) for e in extras_value))
            marker = entry.get("markers", "") if isinstance(entry.get("markers"), str) else ""
        else:
            self.errors.append(ManifestError(self.rel, line, f"unsupported entry for {name}"))
            return
        if not isinstance(constraint, str):
            self.errors.append(ManifestError(self.rel, line, f"version of {name} not a string"))
            return
        self.deps.append(ParsedDependency(
            PYPI, name, normalised, poetry_exact_version(constraint), constraint.strip(),
            self.rel, line, True, extras, marker))


def parse_pyproject(root: Path, path: Path) -> ParsedManifest:
    """Parse the dependency declarations of a pyproject.toml."""
    loaded = load_toml(root, path, PYPROJECT)
    if isinstance(loaded, ParsedManifest):
        return loaded
    text, data = loaded
    return _PyprojectParser(relative_posix(root, path), text, data).parse()
