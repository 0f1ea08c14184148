"""Choosing the version a ``dependency_upgrade`` patch moves to.

The target is the smallest version, above every version the project pins, that no known
advisory of the package affects (not just the APVs' own advisories), in the current major
line where one exists. Candidates are the versions the advisories name as fixes: every
one of them is a real release that the advisory database says closes a hole. When no
candidate is clean, there is no safe upgrade and the patch becomes ``manual``.
"""

from __future__ import annotations

from dataclasses import dataclass

from apps.advisories import osv
from apps.advisories.osv.matching import ecosystem_kind, parse_pep440, parse_semver
from apps.advisories.selectors import AffectedIndex


@dataclass(frozen=True)
class UpgradeChoice:
    target: str | None
    risk_level: str
    reason: str
    advisories_fixed: tuple[str, ...]


def _parse(ecosystem: str, version: str):
    return parse_pep440(version) if ecosystem_kind(ecosystem) == "pypi" else parse_semver(version)


def _major(parsed) -> int:
    return parsed.release[0] if hasattr(parsed, "release") else parsed.major


def _distance(current, target) -> str:
    """low = patch-level move, medium = minor, high = major (a break is most likely)."""
    if _major(current) != _major(target):
        return "high"
    cur = current.release[:2] if hasattr(current, "release") else (current.major, current.minor)
    tgt = target.release[:2] if hasattr(target, "release") else (target.major, target.minor)
    return "low" if cur == tgt else "medium"


def choose_upgrade(*, ecosystem: str, package: str, current_versions: list[str]) -> UpgradeChoice:
    index = AffectedIndex([(ecosystem, package)])
    entries = index.entries(ecosystem, package)
    parsed_current = [p for v in current_versions if (p := _parse(ecosystem, v)) is not None]
    if not parsed_current:
        return UpgradeChoice(None, "high", f"{package} {current_versions} is not an orderable "
                             "version, so no upgrade can be computed", ())
    floor = max(parsed_current)
    candidates = {
        fixed for _, affected in entries for fixed in osv.fixed_versions_for(affected)
    }
    clean = []
    for version in candidates:
        parsed = _parse(ecosystem, version)
        if parsed is None or parsed <= floor:
            continue
        if any(osv.is_affected(affected, version) for _, affected in entries):
            continue
        clean.append((parsed, version))
    if not clean:
        return UpgradeChoice(
            None, "high",
            f"no released version of {package} is free of every known advisory "
            f"(checked {len(candidates)} fixed versions against {len(entries)} entries)", (),
        )
    same_major = [c for c in clean if _major(c[0]) == _major(floor)]
    parsed, target = min(same_major or clean)
    fixed_ids = tuple(sorted({
        advisory.osv_id for advisory, affected in entries
        if any(osv.is_affected(affected, v) for v in current_versions)
    }))
    line = "the same major line" if same_major else "a new major line (none in the current)"
    return UpgradeChoice(
        target, _distance(floor, parsed),
        f"{target} is the smallest version in {line} that no known advisory of {package} "
        f"affects", fixed_ids,
    )
