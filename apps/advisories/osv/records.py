"""Immutable value objects for one parsed OSV record (https://ossf.github.io/osv-schema/)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# Range event kinds, in the OSV schema's own vocabulary (§ affected[].ranges[].events).
EVENT_KINDS: tuple[str, ...] = ("introduced", "fixed", "last_affected", "limit")
# Range types the OSV JSON Schema enumerates (§ affected[].ranges[].type).
RANGE_TYPES: tuple[str, ...] = ("ECOSYSTEM", "SEMVER", "GIT")
SEVERITY_LEVELS: tuple[str, ...] = ("critical", "high", "medium", "low", "none", "unknown")


@dataclass(frozen=True, slots=True)
class Range:
    """One `affected[].ranges[]` entry; events keep the record's order.

    `unparseable` says why an ECOSYSTEM/SEMVER range cannot be ordered (an event that is no
    version of the ecosystem); such a range is kept but decides no match by itself.
    """

    type: str
    events: tuple[tuple[str, str], ...]
    repo: str = ""
    unparseable: str = ""

    def values(self, kind: str) -> tuple[str, ...]:
        """All event values of one kind, in record order."""
        return tuple(value for event_kind, value in self.events if event_kind == kind)


@dataclass(frozen=True, slots=True)
class AffectedPackage:
    """One `affected[]` entry; `normalised_name` is the lookup key (PEP 503 for PyPI)."""

    ecosystem: str
    name: str
    normalised_name: str
    purl: str
    ranges: tuple[Range, ...]
    versions: tuple[str, ...]

    @property
    def fixed_versions(self) -> tuple[str, ...]:
        """`fixed` values of the version ranges in record order (GIT commit hashes left out)."""
        seen: dict[str, None] = {}
        for rng in self.ranges:
            if rng.type != "GIT":
                for value in rng.values("fixed"):
                    seen.setdefault(value, None)
        return tuple(seen)


@dataclass(frozen=True, slots=True)
class SeverityVector:
    """One `severity[]` entry; `base_score` is computed for CVSS types, else None."""

    type: str
    vector: str
    base_score: float | None = None


@dataclass(frozen=True, slots=True)
class ParsedAdvisory:
    """A validated OSV record plus the derived fields the rest of the app needs."""

    id: str
    aliases: tuple[str, ...]
    summary: str
    details: str
    published: datetime | None
    modified: datetime | None
    withdrawn: datetime | None
    severity_vectors: tuple[SeverityVector, ...]
    cvss_score: float | None
    severity: str
    cwe_ids: tuple[str, ...]
    references: tuple[dict[str, Any], ...]
    affected: tuple[AffectedPackage, ...]
    # The record as loaded; compared by content_hash rather than by value.
    raw: dict[str, Any] = field(compare=False, repr=False)
    content_hash: str
    # Size of the record's canonical JSON (what content_hash hashes); bounds import batches.
    size: int = field(default=0, compare=False)

    @property
    def unparseable_ranges(self) -> tuple[str, ...]:
        """Why each range that cannot be ordered cannot be, with where it is."""
        return tuple(
            f"affected[{a_index}].ranges[{r_index}]: {rng.unparseable}"
            for a_index, affected in enumerate(self.affected)
            for r_index, rng in enumerate(affected.ranges)
            if rng.unparseable
        )

    @property
    def is_withdrawn(self) -> bool:
        """True when the record carries a `withdrawn` time (§ withdrawn field)."""
        return self.withdrawn is not None
