"""What is known about a patch before any wargame, as the model's feature dictionary.

Every feature is documented in ``FEATURES`` (and in docs/ml.md, generated from the same
table). Categorical features are strings (one-hot encoded by the model's DictVectorizer),
the rest numbers. Nothing here looks at wargame verdicts: the model must predict them. The
advisory features describe the advisories in the verdict's scope (``patch_features``).
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime

from django.utils import timezone
from packaging.version import InvalidVersion, Version

from apps.advisories.osv import matching as osv
from apps.advisories.selectors import AffectedIndex
from apps.reviews.models import Patch, PatchStrategy

#: name → what it means. The order is the documentation order.
FEATURES: dict[str, str] = {
    "cvss_score": "highest CVSS base score among the advisories in scope (those the exploit "
                  "covers; all the patch claims when it covers none) (0 when none is scored)",
    "cvss_av": "attack vector of that advisory's CVSS vector (N, A, L, P; 'none')",
    "cvss_ac": "attack complexity (L, H; 'none')",
    "cvss_pr": "privileges required (N, L, H; 'none')",
    "cvss_ui": "user interaction (N, R, or CVSS 4's P/A; 'none')",
    "cvss_s": "scope (U, C; 'none' for CVSS 4 and unscored)",
    "cvss_c": "confidentiality impact (H, L, N; CVSS 4's VC)",
    "cvss_i": "integrity impact (H, L, N; CVSS 4's VI)",
    "cvss_a": "availability impact (H, L, N; CVSS 4's VA)",
    "severity": "highest severity among the advisories in scope (critical … low, unknown)",
    "cwe_family": "the weakness family of the in-scope advisories' CWEs (injection, path, "
                  "deserialisation, xss, ssrf, xxe, redirect, crypto_auth, resource, "
                  "validation, exposure, other, unknown)",
    "ecosystem": "the package's ecosystem (PyPI, npm, …)",
    "strategy": "the patch strategy (dependency_upgrade, code_patch, …)",
    "version_bump": "for an upgrade, the largest part of the version that changes: major, "
                    "minor, patch, prerelease; 'none' for other strategies",
    "advisories_claimed": "how many advisories the patch claims to fix",
    "advisories_still_affecting_target": "how many advisories in scope still list the "
                                         "upgrade's target version as affected (0 for "
                                         "non-upgrades)",
    "exploit_available": "1 when the exploit library (built-in or WARGAME_EXPLOIT_DIRS) holds "
                         "a PoC for the patch's advisories or CWE",
    "diff_files": "files the diff touches",
    "diff_added": "lines the diff adds",
    "diff_removed": "lines the diff removes",
    "change_validation": "1 when added lines reject input (an if that returns an error "
                         "status, raises or returns early)",
    "change_sanitisation": "1 when added lines strip or replace characters of the input",
    "change_encoding": "1 when added lines escape or encode output (html.escape, quote, …)",
    "change_parameterised_query": "1 when added lines pass query parameters separately "
                                  "(placeholders ? / %s with an argument tuple)",
    "change_removed_calls": "1 when the diff removes a call without re-adding it (shell=True, "
                            "urlopen, eval, …)",
    "change_denylist": "1 when added lines test the input for a fixed bad token ('x' in s, "
                       "s.replace('x', …), startswith of one scheme)",
    "change_allowlist": "1 when added lines compare against an allowed set or canonicalise "
                        "(realpath, commonpath, allowed hosts, argument lists)",
    "advisory_age_days": "days from the oldest in-scope advisory's publication to the patch",
}

CWE_FAMILIES: dict[str, tuple[int, ...]] = {
    "injection": (74, 77, 78, 88, 89, 90, 91, 94, 95, 917, 1336),
    "path": (22, 23, 35, 36, 59, 73),
    "deserialisation": (502,),
    "xss": (79, 80, 83, 87),
    "ssrf": (918,),
    "xxe": (611, 776, 827),
    "redirect": (601,),
    "crypto_auth": (287, 290, 295, 297, 306, 307, 310, 311, 312, 319, 320, 326, 327, 328,
                    330, 345, 347, 522, 523, 798, 863, 862, 285, 284, 269),
    "resource": (400, 401, 405, 407, 409, 674, 770, 789, 835, 1333),
    "validation": (20, 113, 116, 138, 444, 693, 1284),
    "exposure": (200, 201, 209, 532, 538, 668),
}
_FAMILY_OF = {cwe: family for family, cwes in CWE_FAMILIES.items() for cwe in cwes}
_SEVERITY_RANK = {"critical": 4, "high": 3, "medium": 2, "moderate": 2, "low": 1}

# Heuristics over the diff's added (+) and removed (-) lines. They describe the kind of
# change, not whether it is right: the model learns which kinds wargames proved.
_VALIDATION = re.compile(r"^\s*(if|elif)\b.*:\s*$|\braise\b|\bsend(_json|_error)?\(\s*4\d\d|"
                         r"\babort\(\s*4\d\d|\breturn\s+(False|None)\b")
_SANITISATION = re.compile(r"\.replace\(|\bre\.sub\(|\.strip\(\s*[\"']|\bsanitiz|\bsanitis|"
                           r"\bbleach\.")
_ENCODING = re.compile(r"\bhtml\.escape\(|\bescape\(|\bquote(_plus)?\(|\bencodeURI|"
                       r"\bmarkupsafe\b|\bshlex\.quote\(")
_PARAMETERISED = re.compile(r"""(=|\bIN)\s*(\?|%s|:\w+)["']|\.execute\(\s*\w+\s*,""")
_RISKY_CALL = re.compile(r"shell\s*=\s*True|\burlopen\(|\beval\(|\bexec\(|\bpickle\.loads?\(|"
                         r"\byaml\.(load|full_load)\(|\bos\.system\(|feature_external_\w+,\s*True|"
                         r"\.format\(|f\"[^\"]*\{|f'[^']*\{")
# A fixed bad token: `"x" in s`, a loop over a tuple of literals, replace("x", …), or a
# startswith of one scheme.
_DENYLIST = re.compile(r"""(?<![fF\w])b?["'][^"'{}]{1,20}["']\s+in\s+\w+|"""
                       r"""\bfor\s+\w+\s+in\s+\(\s*["']|\.replace\(\s*["']|"""
                       r"""\.startswith\(\s*["']\w+://""")
# An allowed set or a canonical form: realpath/commonpath, *_ALLOWED_* names, argument
# lists instead of a shell, parsers told not to resolve, same-site-only paths.
_ALLOWLIST = re.compile(r"\brealpath\(|\bcommonpath\(|\bnormpath\(|[A-Z_]*ALLOWED[A-Z_]*|"
                        r"\w*allowed\w*\(|\ballowlist|\bwhitelist|\bsubprocess\.\w+\(\s*\[|"
                        r"feature_external_\w+,\s*False|\burlsplit\(|\burlparse\(|"
                        r"""\.startswith\(\s*["']/["']\)""")


def feature_hash(features: dict) -> str:
    return hashlib.sha256(json.dumps(features, sort_keys=True).encode()).hexdigest()


def _cvss_parts(vector: str) -> dict[str, str]:
    parts = dict(p.split(":", 1) for p in vector.split("/") if ":" in p)
    # CVSS 4 names the impacts on the vulnerable system VC/VI/VA and has no scope.
    return {
        "cvss_av": parts.get("AV", "none"), "cvss_ac": parts.get("AC", "none"),
        "cvss_pr": parts.get("PR", "none"), "cvss_ui": parts.get("UI", "none"),
        "cvss_s": parts.get("S", "none"),
        "cvss_c": parts.get("C", parts.get("VC", "none")),
        "cvss_i": parts.get("I", parts.get("VI", "none")),
        "cvss_a": parts.get("A", parts.get("VA", "none")),
    }


def cwe_family(cwe_ids: list[str]) -> str:
    families = []
    for cwe in cwe_ids:
        match = re.fullmatch(r"CWE-(\d+)", cwe.strip().upper())
        if match:
            families.append(_FAMILY_OF.get(int(match.group(1)), "other"))
    if not families:
        return "unknown"
    # The most specific family wins over the catch-alls when an advisory names several.
    specific = [f for f in families if f not in ("other", "validation", "exposure")]
    return (specific or families)[0]


def version_bump(old: str, new: str) -> str:
    try:
        a, b = Version(old.split(",")[0].strip()), Version(new)
    except InvalidVersion:
        return "unknown"
    ra, rb = (a.release + (0, 0, 0))[:3], (b.release + (0, 0, 0))[:3]
    for name, index in (("major", 0), ("minor", 1), ("patch", 2)):
        if ra[index] != rb[index]:
            return name if rb[index] > ra[index] else "downgrade"
    if a.release != b.release:
        return "patch"
    return "prerelease" if (a.pre, a.dev) != (b.pre, b.dev) or b.is_prerelease else "none"


def diff_features(diff: str) -> dict[str, int]:
    added, removed, files = [], [], set()
    for line in diff.splitlines():
        if line.startswith("+++ "):
            files.add(line[4:].strip())
        elif line.startswith("+") and not line.startswith("+++"):
            added.append(line[1:])
        elif line.startswith("-") and not line.startswith("---"):
            removed.append(line[1:])
    added_text = "\n".join(added)
    still_there = {m.group(0) for line in added for m in _RISKY_CALL.finditer(line)}
    removed_calls = any(m.group(0) not in still_there
                        for line in removed for m in _RISKY_CALL.finditer(line))
    return {
        "diff_files": len(files), "diff_added": len(added), "diff_removed": len(removed),
        "change_validation": int(any(_VALIDATION.search(line) for line in added)),
        "change_sanitisation": int(bool(_SANITISATION.search(added_text))),
        "change_encoding": int(bool(_ENCODING.search(added_text))),
        "change_parameterised_query": int(bool(_PARAMETERISED.search(added_text))),
        "change_removed_calls": int(removed_calls),
        "change_denylist": int(bool(_DENYLIST.search(added_text))),
        "change_allowlist": int(bool(_ALLOWLIST.search(added_text))),
    }


def patch_features(patch: Patch, *, at: datetime | None = None,
                   scope: list[str] | None = None) -> dict[str, float | str]:
    """The feature dictionary of a patch revision, as of ``at`` (default: its creation).

    Features that describe the advisories use those in the verdict's scope (docs/ml.md):
    ``scope`` is the OSV ids a run's exploit covered (training); without it, the ids the
    library's exploit for this patch would cover (predicting). When the scope names none
    of the patch's advisories, all of them are used."""
    from apps.wargaming.exploits import exploit_for_advisory, exploit_for_cwe
    from apps.wargaming.services import exploit_coverage, patch_cwes

    at = at or patch.created_at or timezone.now()
    claimed = list({apv.advisory_id: apv.advisory
                    for apv in patch.apvs.select_related("advisory")}.values())
    all_cwes = sorted({c for a in claimed for c in a.cwe_ids} | set(patch_cwes(patch)))
    ids = {i for a in claimed for i in (a.osv_id, *a.aliases)}
    if patch.strategy == PatchStrategy.CODE_PATCH:
        exploit = exploit_for_cwe(all_cwes)
    else:
        exploit = exploit_for_advisory(ids, patch.package) if ids else None
    if scope is None:
        scope = exploit_coverage(patch, exploit)
    advisories = [a for a in claimed if a.osv_id in set(scope)] or claimed
    scored = [a for a in advisories if a.cvss_score is not None]
    top = max(scored, key=lambda a: a.cvss_score) if scored else None
    cwes = sorted({c for a in advisories for c in a.cwe_ids} | set(patch_cwes(patch)))
    severities = [a.severity for a in advisories if a.severity]
    published = [a.published for a in advisories if a.published]
    upgrade = patch.strategy == PatchStrategy.DEPENDENCY_UPGRADE and patch.target_version
    features: dict[str, float | str] = {
        "cvss_score": float(top.cvss_score) if top else 0.0,
        **_cvss_parts(top.cvss_vector if top and top.cvss_vector else ""),
        "severity": max(severities, key=lambda s: _SEVERITY_RANK.get(s, 0))
        if severities else "unknown",
        "cwe_family": cwe_family(cwes),
        "ecosystem": patch.ecosystem or "unknown",
        "strategy": patch.strategy,
        "version_bump": version_bump(patch.from_version, patch.target_version)
        if upgrade else "none",
        "advisories_claimed": len(claimed),
        "advisories_still_affecting_target": _still_affecting(patch, advisories)
        if upgrade else 0,
        "exploit_available": int(exploit is not None),
        **diff_features(patch.diff if patch.strategy != PatchStrategy.DEPENDENCY_UPGRADE
                        else ""),
        "advisory_age_days": float(max(0, (at - min(published)).days)) if published else 0.0,
    }
    return features


def _still_affecting(patch: Patch, advisories) -> int:
    wanted = {a.pk for a in advisories}
    index = AffectedIndex([(patch.ecosystem, patch.package)])
    hit = {advisory.pk for advisory, affected in index.entries(patch.ecosystem, patch.package)
           if advisory.pk in wanted and osv.is_affected(affected, patch.target_version)}
    return len(hit)
