"""What the wargame corpus teaches on its own: where the advisory data and the exploit
disagree (docs/ml.md, "What the corpus teaches").

For each PoC, the corpus attacked its vulnerable release and then each later release
(apps/wargaming/corpus.py). The advisory data says which releases are fixed; the runs say
which ones the exploit actually fails on. Where the two differ, either the fix was
incomplete or came later than the data says (ARVO-style: the "fixed" version is not the
first one the exploit fails on), or the fix came earlier, or the PoC reaches less than the
advisory describes. The earlier releases upgraded to the vulnerable one show where the
exploit starts to work (``not_reproducible``: it does not yet).

Plain rows in (the export's JSON objects), plain dictionaries out; the advisory facts come
from the database, as the model's features do.
"""

from __future__ import annotations

from collections import defaultdict

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from apps.ml.features import advisories_named, target_position

LABEL_VERDICTS = {"patch_effective", "patch_ineffective", "regression"}


def _version(value: str) -> Version | None:
    try:
        return Version(value)
    except (InvalidVersion, TypeError):
        return None


def _vulnerable_release(exploit: str, rows: list[dict]) -> str:
    """The PoC's ``# vulnerable:`` release: from the library when the PoC is there, else
    the release most rows attack first."""
    from apps.wargaming.exploits import exploit_index

    for found in exploit_index():
        if found.name == exploit and found.vulnerable:
            return found.vulnerable
    counts: dict[str, int] = defaultdict(int)
    for row in rows:
        counts[row["vulnerable_version"]] += 1
    return max(counts, key=counts.get)


def corpus_lessons(rows: list[dict]) -> list[dict]:
    """Per package PoC: the advisory's first fixed release after the vulnerable one, the
    first later release the exploit fails on, and every release where the two disagree."""
    from apps.advisories.selectors import AffectedIndex

    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in rows:
        if row.get("strategy") == "dependency_upgrade":
            groups[(canonicalize_name(row["package"]), row["exploit"])].append(row)
    lessons = []
    for (package, exploit), found in sorted(groups.items()):
        vulnerable = _vulnerable_release(exploit, found)
        advisories = advisories_named(found[0].get("advisory_ids") or [], ecosystem="PyPI",
                                      package=package)
        wanted = {a.pk for a in advisories}
        entries = [e for a, e in AffectedIndex([("PyPI", package)]).entries("PyPI", package)
                   if a.pk in wanted]
        forward = sorted((r for r in found if r["vulnerable_version"] == vulnerable),
                         key=lambda r: _version(r["candidate_version"]) or Version("0"))
        backward = [r for r in found if r["candidate_version"] == vulnerable]
        start = _version(vulnerable)
        fixes = sorted({v for e in entries for f in e.fixed_versions
                        if (v := _version(f)) is not None and start is not None and v > start})
        blocked = [r["candidate_version"] for r in forward if r["verdict"] == "patch_effective"]
        disagreements = []
        for row in forward:
            if row["verdict"] not in LABEL_VERDICTS:
                continue
            leaves, distance = target_position(entries, row["candidate_version"])
            exploited = row["verdict"] != "patch_effective"
            if leaves == "yes" and exploited:
                disagreements.append({"release": row["candidate_version"],
                                      "advisory": "fixed", "exploit": "still works",
                                      "fix_distance": distance})
            elif leaves == "no" and not exploited:
                disagreements.append({"release": row["candidate_version"],
                                      "advisory": "affected", "exploit": "fails",
                                      "fix_distance": distance})
        not_yet = [r["vulnerable_version"] for r in backward
                   if r["verdict"] == "not_reproducible"]
        verdicts: dict[str, int] = defaultdict(int)
        for row in found:
            verdicts[row["verdict"]] += 1
        lessons.append({
            "package": package, "exploit": exploit, "vulnerable": vulnerable,
            "advisories": [a.osv_id for a in advisories],
            "advisory_first_fixed": str(fixes[0]) if fixes else None,
            "advisory_fixed": [str(f) for f in fixes],
            "exploit_first_fails_on": blocked[0] if blocked else None,
            "later_releases": len(forward), "earlier_releases": len(backward),
            "verdicts": dict(sorted(verdicts.items())),
            "disagreements": disagreements,
            "earlier_not_exploited": sorted(not_yet, key=lambda v: _version(v) or Version("0")),
            "agrees": not disagreements and (not fixes or not blocked
                                             or str(fixes[0]) == blocked[0]),
        })
    return lessons
