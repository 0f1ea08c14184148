"""Decide whether a package version is affected, following OSV § Evaluation.

https://ossf.github.io/osv-schema/#evaluation — a version is affected when it is listed in
`versions` or lies inside any range; GIT ranges need a commit graph, so they never decide a
version match here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import semver
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from .records import AffectedPackage, ParsedAdvisory, Range

__all__ = [
    "AdvisoryIndex",
    "ecosystem_kind",
    "fixed_versions_for",
    "in_ranges",
    "in_versions",
    "is_affected",
    "normalise_name",
    "parse_pep440",
    "parse_semver",
    "possibly_affected",
    "range_problem",
    "unorderable_reason",
]

_CACHE_SIZE = 1 << 16
# Sort ranks: `introduced: "0"` sorts before every version, a `limit` holding `*` after every
# version (OSV § Special values); real versions sit in between.
_MIN, _REAL, _MAX = 0, 1, 2

_EPOCH = datetime.min.replace(tzinfo=UTC)

Parser = Callable[[str], Any]


def ecosystem_kind(ecosystem: str) -> str:
    """`pypi`, `npm` or `other`; suffixes such as `Debian:11` name a release, not a new kind."""
    base = ecosystem.split(":", 1)[0].strip().lower()
    return base if base in ("pypi", "npm") else "other"


def normalise_name(ecosystem: str, name: str) -> str:
    """Lookup form of a package name for its ecosystem."""
    kind = ecosystem_kind(ecosystem)
    if kind == "pypi":
        # PEP 503: runs of -, _ and . are one "-", comparison is case-insensitive.
        return canonicalize_name(name)
    if kind == "npm":
        # npm names are lower-case by registry rule; legacy mixed-case names compare as such.
        return name.lower()
    return name


@functools.lru_cache(maxsize=_CACHE_SIZE)
def parse_pep440(value: str) -> Version | None:
    """PEP 440 version, or None when `value` is not one (never raises)."""
    try:
        return Version(value)
    except (InvalidVersion, TypeError):
        return None


@functools.lru_cache(maxsize=_CACHE_SIZE)
def parse_semver(value: str) -> semver.Version | None:
    """SemVer 2.0.0 version (a leading `v` tolerated), or None (never raises)."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text[:1] in ("v", "V"):
        text = text[1:]
    try:
        return semver.Version.parse(text)
    except (ValueError, TypeError):
        return None


_ECOSYSTEM_PARSERS: dict[str, Parser] = {"pypi": parse_pep440, "npm": parse_semver}


def _ecosystem_parser(kind: str) -> Parser | None:
    """PEP 440 for PyPI, SemVer for npm; other ecosystems' orders are not implemented here."""
    return _ECOSYSTEM_PARSERS.get(kind)


def _parser_for(range_type: str, kind: str) -> Parser | None:
    """Version order a range uses (OSV § affected[].ranges[].type); None = cannot order."""
    if range_type == "SEMVER":
        return parse_semver
    if range_type == "ECOSYSTEM":
        return _ecosystem_parser(kind)
    return None  # GIT needs commit ancestry, not version order.


_ORDER_NAMES = {parse_pep440: "PEP 440", parse_semver: "SemVer"}


def range_problem(rng: Range, kind: str) -> str:
    """Why an ECOSYSTEM/SEMVER range cannot be ordered ("" when it can, or is GIT/unknown).

    PyPI still carries releases named before PEP 440, and some records put one in a range
    event (binderhub PYSEC-2021-371 `fixed: 0.2.0-n653`, steam PYSEC-2019-125
    `fixed: 2019-09-12`): such a range cannot decide which versions lie inside it.
    """
    parse = _parser_for(rng.type, kind)
    if parse is None:
        return ""
    for event_kind, value in rng.events:
        if _event_key(event_kind, value, parse) is None:
            order = _ORDER_NAMES[parse]
            return f"{rng.type} range event {event_kind} {value!r} is not a {order} version"
    return ""


@dataclass(frozen=True, slots=True)
class _CompiledRange:
    parse: Parser
    # (kind, rank, parsed) sorted by version; `limit` events are kept apart.
    events: tuple[tuple[str, int, Any], ...]
    limits: tuple[tuple[int, Any], ...]


def _event_key(kind: str, value: str, parse: Parser) -> tuple[int, Any] | None:
    if kind == "introduced" and value == "0":
        return (_MIN, None)
    if kind == "limit" and "*" in value:
        return (_MAX, None)
    parsed = parse(value)
    if parsed is None:
        # SemVer has no "0"; the schema uses it as the lowest possible version.
        return (_MIN, None) if value == "0" else None
    return (_REAL, parsed)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _compile_range(rng: Range, kind: str) -> _CompiledRange | None:
    """Parse and sort one range once; None when it cannot decide version matches."""
    parse = _parser_for(rng.type, kind)
    if parse is None:
        return None
    keyed: list[tuple[int, Any, int, str]] = []
    limits: list[tuple[int, Any]] = []
    for position, (event_kind, value) in enumerate(rng.events):
        key = _event_key(event_kind, value, parse)
        if key is None:
            # An unorderable event makes the whole range undecidable; guessing could widen it.
            return None
        if event_kind == "limit":
            limits.append(key)
        else:
            keyed.append((key[0], key[1], position, event_kind))
    # OSV § Evaluation sorts events by version; ties keep record order (stable sort on the key).
    keyed.sort(key=lambda item: (item[0], item[1]) if item[0] == _REAL else (item[0],))
    events = tuple((event_kind, rank, parsed) for rank, parsed, _pos, event_kind in keyed)
    return _CompiledRange(parse=parse, events=events, limits=tuple(limits))


def _ge(version: Any, rank: int, bound: Any) -> bool:
    if rank == _MIN:
        return True
    if rank == _MAX:
        return False
    return version >= bound


def _gt(version: Any, rank: int, bound: Any) -> bool:
    if rank == _MIN:
        return True
    if rank == _MAX:
        return False
    return version > bound


def _range_contains(compiled: _CompiledRange, version: Any) -> bool:
    # BeforeLimits: with limit events, the version must sit below at least one of them.
    if compiled.limits and all(_ge(version, rank, bound) for rank, bound in compiled.limits):
        return False
    vulnerable = False
    # The IsAffected loop of OSV § Evaluation, over events already sorted by version.
    for event_kind, rank, bound in compiled.events:
        if event_kind == "introduced" and _ge(version, rank, bound):
            vulnerable = True
        elif event_kind == "fixed" and _ge(version, rank, bound):
            vulnerable = False
        elif event_kind == "last_affected" and _gt(version, rank, bound):
            # last_affected is inclusive: only versions strictly above it leave the range.
            vulnerable = False
    return vulnerable


def in_ranges(affected: AffectedPackage, version: str) -> bool:
    """True when `version` lies inside an ECOSYSTEM or SEMVER range (ignores `versions`)."""
    kind = ecosystem_kind(affected.ecosystem)
    for rng in affected.ranges:
        compiled = _compile_range(rng, kind)
        if compiled is None:
            continue
        parsed = compiled.parse(version)
        if parsed is not None and _range_contains(compiled, parsed):
            return True
    return False


@functools.lru_cache(maxsize=4096)
def _version_sets(kind: str, versions: tuple[str, ...]) -> tuple[frozenset[str], frozenset[Any]]:
    """`versions` as raw strings and as parsed versions, so PEP 440 `1.0` equals `1.0.0`."""
    parse = _ecosystem_parser(kind)
    parsed = () if parse is None else (p for p in map(parse, versions) if p is not None)
    # Kept apart: semver.Version compares itself with strings and raises on non-SemVer ones.
    return frozenset(versions), frozenset(parsed)


def in_versions(affected: AffectedPackage, version: str) -> bool:
    """True when `version` is one of the explicitly listed `versions`."""
    if not affected.versions:
        return False
    kind = ecosystem_kind(affected.ecosystem)
    raw, parsed_set = _version_sets(kind, affected.versions)
    if version in raw:
        return True
    parse = _ecosystem_parser(kind)
    parsed = None if parse is None else parse(version)
    return parsed is not None and parsed in parsed_set


def is_affected(affected: AffectedPackage, version: str) -> bool:
    """OSV § Evaluation: listed in `versions` or inside any range; never raises."""
    if not isinstance(version, str) or not version:
        return False
    return in_versions(affected, version) or in_ranges(affected, version)


def unorderable_reason(affected: AffectedPackage) -> str:
    """The first range of the entry that cannot be ordered, with why ("" when none)."""
    kind = ecosystem_kind(affected.ecosystem)
    for rng in affected.ranges:
        reason = rng.unparseable or range_problem(rng, kind)
        if reason:
            return reason
    return ""


def possibly_affected(affected: AffectedPackage, version: str) -> str:
    """Why `version` is *possibly* affected ("" when it is not, or when it is affected for sure).

    A range that cannot be ordered decides nothing by itself. When the record lists its
    affected `versions` explicitly, that list decides (OSV § affected[].versions enumerates
    what the ranges cover), so `is_affected` already answers. Without a list nothing can rule
    a version out: every version of the package is possibly affected, and the reason says so.
    """
    if affected.versions or not isinstance(version, str) or not version:
        return ""
    reason = unorderable_reason(affected)
    if not reason or is_affected(affected, version):
        return ""
    return (f"possibly affected: {reason}, and the record lists no affected versions, so "
            f"every version of {affected.name} is treated as possibly affected")


def fixed_versions_for(affected: AffectedPackage) -> tuple[str, ...]:
    """`fixed` versions, lowest first in the ecosystem's order (unorderable ones last)."""
    values = affected.fixed_versions
    parse = _ecosystem_parser(ecosystem_kind(affected.ecosystem))
    if parse is None:
        return values
    orderable = [(parsed, v) for v in values if (parsed := parse(v)) is not None]
    orderable.sort(key=lambda pair: pair[0])
    rest = [v for v in values if parse(v) is None]
    return tuple(v for _parsed, v in orderable) + tuple(rest)


def _index_key(ecosystem: str, name: str) -> tuple[str, str]:
    # Ecosystem names are compared case-insensitively so "pypi" finds "PyPI" records.
    return (ecosystem.strip().casefold(), normalise_name(ecosystem, name))


class AdvisoryIndex:
    """Advisories indexed by (ecosystem, normalised name) for fast per-package look-ups."""

    def __init__(self, advisories: Iterable[ParsedAdvisory] = ()) -> None:
        self._by_id: dict[str, ParsedAdvisory] = {}
        self._by_package: dict[tuple[str, str], list[tuple[ParsedAdvisory, AffectedPackage]]] = {}
        for advisory in advisories:
            self.add(advisory)

    def add(self, advisory: ParsedAdvisory) -> bool:
        """Index one advisory; withdrawn ones and older copies of an id are skipped."""
        if advisory.withdrawn is not None:
            return False
        current = self._by_id.get(advisory.id)
        if current is not None:
            if _modified_key(current) > _modified_key(advisory):
                return False
            self._remove(current)
        self._by_id[advisory.id] = advisory
        for affected in advisory.affected:
            if not affected.ecosystem or not affected.name:
                continue  # GIT-only entries have no package (OSV § Separating Git ...).
            key = _index_key(affected.ecosystem, affected.name)
            self._by_package.setdefault(key, []).append((advisory, affected))
        return True

    def _remove(self, advisory: ParsedAdvisory) -> None:
        del self._by_id[advisory.id]
        for affected in advisory.affected:
            key = _index_key(affected.ecosystem, affected.name)
            kept = [pair for pair in self._by_package.get(key, ()) if pair[0] is not advisory]
            if kept:
                self._by_package[key] = kept
            else:
                self._by_package.pop(key, None)

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, advisory_id: object) -> bool:
        return advisory_id in self._by_id

    def get(self, advisory_id: str) -> ParsedAdvisory | None:
        """The indexed advisory with this id, if any."""
        return self._by_id.get(advisory_id)

    def matches(
        self, ecosystem: str, name: str, version: str
    ) -> list[tuple[ParsedAdvisory, AffectedPackage]]:
        """(advisory, affected entry) pairs that affect this package version."""
        ecosystem_key, name_key = _index_key(ecosystem, name)
        candidates = list(self._by_package.get((ecosystem_key, name_key), ()))
        # name "*" means every package of the ecosystem (OSV 1.9 § affected[].package).
        if name_key != "*":
            candidates += self._by_package.get((ecosystem_key, "*"), ())
        return [(adv, aff) for adv, aff in candidates if is_affected(aff, version)]


def _modified_key(advisory: ParsedAdvisory) -> tuple[bool, datetime]:
    # A copy without `modified` loses against any dated copy of the same id.
    return (advisory.modified is not None, advisory.modified or _EPOCH)
