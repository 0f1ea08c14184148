"""Verdict scope: the advisories a run's exploit covers (SPEC, Round 2; issue 11).

A PoC proves or disproves one weakness. A patch may claim to fix many advisories (an
upgrade of Django 3.2 to 3.2.25 claims 25), and the PoC that ran names one or two of them;
its verdict says nothing about the others, which show "no exploit" (docs/wargaming.md,
"Verdict scope"). Plain data in, OSV ids out, so the migration that fills old runs uses
the same rule as the runs themselves.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class AdvisoryRef:
    osv_id: str
    aliases: tuple[str, ...] = ()
    cwe_ids: tuple[str, ...] = ()


def covered_advisories(*, kind: str, exploit_advisories: Iterable[str], exploit_cwe: str,
                       advisories: Iterable[AdvisoryRef],
                       patch_cwes: Iterable[str] = ()) -> list[str]:
    """The OSV ids of ``advisories`` the exploit covers, sorted.

    - a package exploit covers the advisories whose id or one of whose aliases its
      ``# advisories:`` header names;
    - an HTTP exploit covers the advisories whose CWEs contain its ``# cwe:``, or every
      advisory of the patch when that CWE was named by the patch itself (title or notes):
      then the patch's author said which weakness the code change is about.
    """
    advisories = list(advisories)
    if kind == "http":
        cwe = (exploit_cwe or "").upper()
        if not cwe:
            return []
        if cwe in {c.upper() for c in patch_cwes}:
            return sorted({a.osv_id for a in advisories})
        return sorted({a.osv_id for a in advisories if cwe in {c.upper() for c in a.cwe_ids}})
    named = {a.upper() for a in exploit_advisories}
    return sorted({a.osv_id for a in advisories
                   if named & {i.upper() for i in (a.osv_id, *a.aliases)}})
