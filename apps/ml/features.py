"""What is known about a patch before any wargame, as the model's feature dictionary.

Every feature is documented in ``FEATURES`` (and in docs/ml.md, from the same table).
Categorical features are strings (one-hot encoded by the model's DictVectorizer), the rest
numbers. Nothing here looks at wargame verdicts: the model must predict them.

The same function, ``pair_features``, describes a proposed patch (``patch_features``) and a
row of the wargame corpus (``row_features``): plain facts in (package, versions, strategy,
the advisories in the verdict's scope, the diff, whether it compiles), a dictionary out, so
training and prediction never see two versions of a feature. The features are chosen to
carry to a package the model never saw (docs/ml.md, "Features"): where the upgrade's
target stands against the advisory's affected ranges and its first fixed release, the kind
of version change, the weakness family, the kind of code change, and whether the patched
code compiles. What only named the training set's own packages and projects (the CVSS
vector's parts, how many advisories a patch claims, the ecosystem, whether a PoC exists,
the advisory's age on the day the patch was made, the diff's size) is not a feature any
more.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from packaging.version import InvalidVersion, Version

from apps.advisories.models import Advisory
from apps.advisories.osv import matching as osv
from apps.advisories.selectors import AffectedIndex
from apps.reviews.models import Patch, PatchStrategy

NOT_APPLICABLE = "n/a"
#: The version of the feature dictionary below; a model trained on another one is not used
#: (ModelVersion.feature_set). 1: the first set (issue 7); 2: the corpus's (issue 17).
FEATURE_SET = 2

#: name → what it means. The order is the documentation order.
FEATURES: dict[str, str] = {
    "strategy": "the patch strategy (dependency_upgrade, code_patch, …)",
    "target_leaves_affected": "for an upgrade: 'yes' when the target version is outside "
                              "every affected range (and versions list) of the advisories "
                              "in scope, 'no' when one still lists it; 'n/a' otherwise",
    "fix_distance": "for an upgrade: where the target stands against the advisories' fixed "
                    "releases — 'at' the first fixed release, 'after_patch' / 'after_minor' "
                    "/ 'after_major' (the largest version part beyond the fix that it is "
                    "past), 'before_patch' / 'before_minor' / 'before_major' (still short "
                    "of the next fix), 'no_fix' (affected, and no release fixes it); 'n/a' "
                    "for other strategies",
    "version_bump": "for an upgrade, the largest part of the version that changes: major, "
                    "minor, patch, prerelease (or downgrade, unknown); 'none' for other "
                    "strategies",
    "compiles": "for a code patch: 'yes' when every Python file the diff leaves compiles "
                "(byte-compiled in the wargame sandbox), 'no' when one does not; 'n/a' for "
                "upgrades and when it could not be checked",
    "cwe_family": "the weakness family of the in-scope advisories' CWEs (injection, path, "
                  "deserialisation, xss, ssrf, xxe, redirect, crypto_auth, resource, "
                  "validation, exposure, other, unknown); a CWE named in a code patch's "
                  "title counts too",
    "severity": "highest severity among the advisories in scope (critical … low, unknown)",
    "cvss_score": "highest CVSS base score among the advisories in scope (NVD's when the "
                  "OSV record has none; 0 when none is scored)",
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




# --- Where an upgrade's target stands ------------------------------------------------------

_LEVELS = ("patch", "minor", "major")


def _version(value: str) -> Version | None:
    try:
        return Version(value.split(",")[0].strip())
    except (InvalidVersion, AttributeError):
        return None


def _level(lower: Version, upper: Version) -> str | None:
    """The largest version part in which ``upper`` is past ``lower`` (None when equal)."""
    if lower == upper:
        return None
    a, b = (lower.release + (0, 0, 0))[:3], (upper.release + (0, 0, 0))[:3]
    if a[0] != b[0]:
        return "major"
    if a[1] != b[1]:
        return "minor"
    return "patch"


def _fixed(affected: osv.AffectedPackage) -> list[Version]:
    return sorted(v for value in affected.fixed_versions if (v := _version(value)) is not None)


def target_position(entries: Iterable[osv.AffectedPackage], target: str) -> tuple[str, str]:
    """(``target_leaves_affected``, ``fix_distance``) of an upgrade to ``target`` against
    the affected entries of the advisories in scope (OSV § Evaluation decides "affected")."""
    entries = list(entries)
    version = _version(target)
    if version is None or not entries:
        return NOT_APPLICABLE, NOT_APPLICABLE
    affecting = [e for e in entries if osv.is_affected(e, target)]
    if affecting:
        # Still short of a fix: how far the next fixed release of each is (the farthest
        # counts: every advisory in scope must be fixed).
        levels = []
        for entry in affecting:
            later = [f for f in _fixed(entry) if f > version]
            if not later:
                return "no", "no_fix"
            levels.append(_level(version, later[0]) or "patch")
        return "no", "before_" + max(levels, key=_LEVELS.index)
    below = [f for entry in entries for f in _fixed(entry) if f <= version]
    if not below:
        return "yes", NOT_APPLICABLE  # outside every range without passing a fix
    level = _level(max(below), version)
    return "yes", "at" if level is None else f"after_{level}"


# --- The feature dictionary ------------------------------------------------------------------

@dataclass
class PatchFacts:
    """What is known about a patch (or a corpus pair) before it is wargamed."""

    strategy: str
    ecosystem: str = "PyPI"
    package: str = ""
    from_version: str = ""
    target_version: str = ""
    #: The advisories in the verdict's scope (those the exploit covers).
    advisories: list[Advisory] = field(default_factory=list)
    #: CWEs the patch itself names (title, notes; a corpus code patch's CWE).
    cwes: list[str] = field(default_factory=list)
    diff: str = ""
    compiles: bool | None = None


def pair_features(facts: PatchFacts) -> dict[str, float | str]:
    upgrade = facts.strategy == PatchStrategy.DEPENDENCY_UPGRADE and bool(facts.target_version)
    advisories = facts.advisories
    scored = [a for a in advisories if a.cvss_score is not None]
    severities = [a.severity for a in advisories if a.severity]
    cwes = sorted({c for a in advisories for c in a.cwe_ids} | set(facts.cwes))
    leaves, distance = NOT_APPLICABLE, NOT_APPLICABLE
    if upgrade:
        wanted = {a.pk for a in advisories}
        index = AffectedIndex([(facts.ecosystem, facts.package)])
        entries = [affected for advisory, affected in index.entries(facts.ecosystem,
                                                                    facts.package)
                   if advisory.pk in wanted]
        leaves, distance = target_position(entries, facts.target_version)
    code = facts.strategy == PatchStrategy.CODE_PATCH
    return {
        "strategy": facts.strategy,
        "target_leaves_affected": leaves,
        "fix_distance": distance,
        "version_bump": version_bump(facts.from_version, facts.target_version)
        if upgrade else "none",
        "compiles": NOT_APPLICABLE if not code or facts.compiles is None
        else ("yes" if facts.compiles else "no"),
        "cwe_family": cwe_family(cwes),
        "severity": max(severities, key=lambda s: _SEVERITY_RANK.get(s, 0))
        if severities else "unknown",
        "cvss_score": float(max(a.cvss_score for a in scored)) if scored else 0.0,
        **{name: value for name, value in diff_features(facts.diff if not upgrade else "").items()
           if name.startswith("change_")},
    }


def patch_features(patch: Patch, *, scope: list[str] | None = None) -> dict[str, float | str]:
    """The feature dictionary of a patch revision.

    Features that describe the advisories use those in the verdict's scope (docs/ml.md):
    ``scope`` is the OSV ids a run's exploit covered (training); without it, the ids the
    library's exploit for this patch would cover (predicting). When the scope names none
    of the patch's advisories, all of them are used. A code patch is compiled in the
    sandbox (``compiles``)."""
    from apps.wargaming.compile_check import patch_compiles
    from apps.wargaming.exploits import exploit_for_advisory, exploit_for_cwe
    from apps.wargaming.services import exploit_coverage, patch_cwes

    claimed = list({apv.advisory_id: apv.advisory
                    for apv in patch.apvs.select_related("advisory")}.values())
    named = patch_cwes(patch)
    if scope is None:
        all_cwes = sorted({c for a in claimed for c in a.cwe_ids} | set(named))
        ids = {i for a in claimed for i in (a.osv_id, *a.aliases)}
        if patch.strategy == PatchStrategy.CODE_PATCH:
            exploit = exploit_for_cwe(all_cwes)
        else:
            exploit = exploit_for_advisory(ids, patch.package) if ids else None
        scope = exploit_coverage(patch, exploit)
    advisories = [a for a in claimed if a.osv_id in set(scope)] or claimed
    code = patch.strategy == PatchStrategy.CODE_PATCH
    return pair_features(PatchFacts(
        strategy=patch.strategy, ecosystem=patch.ecosystem or "PyPI", package=patch.package,
        from_version=patch.from_version, target_version=patch.target_version,
        advisories=advisories, cwes=named,
        diff=patch.diff if patch.strategy != PatchStrategy.DEPENDENCY_UPGRADE else "",
        compiles=patch_compiles(patch).compiles if code else None))


def advisories_named(ids: Iterable[str], *, ecosystem: str, package: str) -> list[Advisory]:
    """The live advisories of ``package`` whose OSV id or an alias is in ``ids``."""
    from django.db.models import Q

    wanted = sorted({i.upper() for i in ids} | set(ids))
    index = AffectedIndex([(ecosystem, package)])
    candidates = {a.pk for a, _ in index.entries(ecosystem, package)}
    return list(Advisory.objects.filter(Q(osv_id__in=wanted) | Q(alias_rows__alias__in=wanted),
                                        pk__in=candidates).distinct().order_by("osv_id"))


def row_features(row: dict) -> dict[str, float | str] | None:
    """The feature dictionary of a corpus row (apps.wargaming.corpus), or None when none
    of its advisories is in the database (import the advisory feed first)."""
    from packaging.utils import canonicalize_name

    ecosystem = row.get("ecosystem") or "PyPI"
    package = canonicalize_name(row["package"])
    advisories = advisories_named(row.get("advisory_ids") or [], ecosystem=ecosystem,
                                  package=package)
    if not advisories:
        return None
    return pair_features(PatchFacts(
        strategy=row["strategy"], ecosystem=ecosystem, package=package,
        from_version=row.get("vulnerable_version", ""),
        target_version=row.get("candidate_version", "")
        if row["strategy"] == PatchStrategy.DEPENDENCY_UPGRADE else "",
        advisories=advisories, cwes=[row["cwe"]] if row.get("cwe") else [],
        diff=row.get("diff") or "", compiles=row.get("compiles")))
