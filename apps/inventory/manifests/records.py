"""Plain records produced by the manifest parsers, plus small shared helpers.

Everything here is pure Python (no Django) so the parsers can run in workers,
management commands or tests alike.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from contextvars import ContextVar
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
    #: Manifest paths this parse could not read at all (too large, not UTF-8, invalid
    #: JSON/TOML, over a cap): a scan keeps what the previous scan found in them rather
    #: than taking "unreadable" for "every dependency removed".
    unread: tuple[str, ...] = ()


@dataclass(frozen=True)
class ScanLimits:
    """Caps that bound the time and memory of parsing one project (settings ``SCAN_MAX_*``).

    A file over ``max_manifest_bytes`` is refused from its size before a byte is read, so
    a manifest costs at most that much text, plus the parsed form of at most
    ``max_dependencies`` dependencies; longer lines and further errors are not kept.
    """

    max_manifest_bytes: int = 5 * 1024 * 1024  # SCAN_MAX_MANIFEST_BYTES
    max_dependencies: int = 20_000  # SCAN_MAX_DEPENDENCIES, per manifest
    max_project_dependencies: int = 100_000  # SCAN_MAX_PROJECT_DEPENDENCIES
    max_manifests: int = 1_000  # SCAN_MAX_MANIFESTS
    max_line_chars: int = 100_000  # one logical requirements line (a long --hash list is ~5,000)
    max_errors: int = 100  # errors listed per manifest; the rest are counted


_limits: ContextVar[ScanLimits] = ContextVar("scan_limits", default=ScanLimits())  # noqa: B039


def limits() -> ScanLimits:
    """The caps in force for the parse running in this context."""
    return _limits.get()


@contextmanager
def scan_limits(value: ScanLimits):
    """Parse with ``value`` as the caps (:func:`parse_project` sets them for its parse)."""
    token = _limits.set(value)
    try:
        yield value
    finally:
        _limits.reset(token)


class ManifestTooLarge(OSError):
    """A manifest over ``max_manifest_bytes``; an OSError so every reader reports it."""

    def __init__(self, size: int, cap: int) -> None:
        super().__init__(
            f"{size:,} bytes, over the {cap:,}-byte cap (SCAN_MAX_MANIFEST_BYTES); not read")


class TooManyDependencies(Exception):
    """A manifest declaring more than ``max_dependencies`` (raised while it is parsed)."""


def too_many_dependencies(rel: str, kind: str, count: str | int) -> ParsedManifest:
    cap = limits().max_dependencies
    return ParsedManifest(rel, kind, [], [ManifestError(
        rel, None, f"{count} dependencies, over the cap of {cap:,} per manifest "
                   f"(SCAN_MAX_DEPENDENCIES); manifest skipped")], unread=(rel,))


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

    A file over the size cap is refused from its size (ManifestTooLarge), before a byte is
    read; what is read is checked against the cap again. Raises ``OSError`` or
    ``UnicodeDecodeError``; callers turn those into ManifestErrors.
    """
    cap = limits().max_manifest_bytes
    with path.open("rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > cap:
            raise ManifestTooLarge(size, cap)
        # read(n) allocates n bytes up front: ask for what the file holds, not for the cap.
        data = handle.read(size + 1)
    if len(data) > cap:
        raise ManifestTooLarge(len(data), cap)
    return data.decode("utf-8-sig")


def unreadable(root: Path, path: Path, kind: str, exc: Exception) -> ParsedManifest:
    """A ParsedManifest for a file that could not be read or decoded at all."""
    rel = relative_posix(root, path)
    if isinstance(exc, UnicodeDecodeError):
        reason = f"not UTF-8 text (byte {exc.start}: {exc.reason})"
    else:
        reason = f"cannot read file: {exc}"
    return ParsedManifest(rel, kind, [], [ManifestError(rel, None, reason)], unread=(rel,))


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
    except (ValueError, RecursionError) as exc:  # RecursionError: arrays nested too deep
        reason = exc if isinstance(exc, ValueError) else "nested too deep"
        return ParsedManifest(rel, kind, [], [ManifestError(rel, None, f"invalid JSON: {reason}")],
                              unread=(rel,))
    if not isinstance(data, dict):
        return ParsedManifest(rel, kind, [], [ManifestError(rel, None, "not a JSON object")],
                              unread=(rel,))
    return text, data
