"""Plain records produced by the manifest parsers, plus small shared helpers.

Everything here is pure Python (no Django) so the parsers can run in workers,
management commands or tests alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

PYPI = "PyPI"
NPM = "npm"


@dataclass(frozen=True)
class ParsedDependency:
    """One dependency declared (or locked) in a manifest."""

    ecosystem: str  # "PyPI" or "npm" (OSV ecosystem names)
    name: str  # as written in the manifest
    normalised_name: str  # PEP 503 canonical name for PyPI, lower-case for npm
    version: str | None  # exact pinned version, None when not pinned
    specifier: str  # version constraint as written, e.g. ">=1.0,<2" or "==1.2.3"
    manifest_path: str  # posix path relative to the project root
    line: int | None  # 1-based line of the declaration, None when unknown
    direct: bool
    extras: tuple[str, ...] = ()
    marker: str = ""
    hashes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ManifestError:
    """A problem found while reading a manifest; parsing carries on past it."""

    manifest_path: str
    line: int | None
    reason: str


@dataclass(frozen=True)
class ParsedManifest:
    """The outcome of parsing one manifest file."""

    path: str  # posix path relative to the project root
    kind: str
    dependencies: list[ParsedDependency] = field(default_factory=list)
    errors: list[ManifestError] = field(default_factory=list)


def normalise_name(ecosystem: str, name: str) -> str:
    """Canonical form used to compare names: PEP 503 for PyPI, lower-case for npm."""
    if ecosystem == PYPI:
        return canonicalize_name(name)
    # npm package names are case-insensitive for lookups and new ones must be
    # lower-case; scoped names keep their "@scope/" prefix.
    return name.strip().lower()


def relative_posix(root: Path, path: Path) -> str:
    """``path`` relative to ``root`` as a posix string (falls back to the path as given)."""
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except (ValueError, OSError):
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            return path.as_posix()


def read_text(path: Path) -> str:
    """Read a manifest as UTF-8, dropping a byte-order mark (pip and npm both accept one).

    Raises ``OSError`` or ``UnicodeDecodeError``; callers turn those into ManifestErrors.
    """
    return path.read_text(encoding="utf-8-sig")


def unreadable(root: Path, path: Path, kind: str, exc: Exception) -> ParsedManifest:
    """A ParsedManifest for a file that could not be read or decoded at all."""
    rel = relative_posix(root, path)
    return ParsedManifest(rel, kind, [], [ManifestError(rel, None, f"cannot read file: {exc}")])


def load_json(root: Path, path: Path, kind: str) -> tuple[str, dict[str, Any]] | ParsedManifest:
    """Read a JSON manifest whose top level must be an object.

    Returns ``(text, data)``, or the failed ParsedManifest (one error naming the
    file and the parser's message) when it cannot be read or parsed.
    """
    try:
        text = read_text(path)
    except (OSError, UnicodeDecodeError) as exc:
        return unreadable(root, path, kind, exc)
    rel = relative_posix(root, path)
    try:
        data = json.loads(text)
    except ValueError as exc:
        return ParsedManifest(rel, kind, [], [ManifestError(rel, None, f"invalid JSON: {exc}")])
    if not isinstance(data, dict):
        return ParsedManifest(rel, kind, [], [ManifestError(rel, None, "not a JSON object")])
    return text, data
