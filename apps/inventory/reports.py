"""Render scan findings as SARIF 2.1.0 and as a CycloneDX VEX document.

Pure functions (no Django, no ORM). A *finding* is the plain dict that
``apps.reviews.selectors.apv_finding`` builds, with the keys ``apv``, ``package``,
``version``, ``ecosystem`` ("PyPI" or "npm"), ``manifest``, ``line``, ``advisory``,
``aliases``, ``severity``, ``cvss_score``, ``fixed_in`` (lowest first), ``priority``,
``status`` and, optionally, ``summary``, ``cwe_ids``, ``cvss_vector`` and ``references``.

- :func:`findings_to_sarif` returns a SARIF log as a dict (one rule per advisory, one
  result per finding), in the subset GitHub code scanning accepts.
- :func:`findings_to_cyclonedx_vex` returns CycloneDX JSON (spec :data:`CYCLONEDX_SPEC`)
  built with ``cyclonedx-python-lib``: one component per package version, one
  vulnerability per advisory with the VEX analysis derived from the findings' statuses.
"""

from __future__ import annotations

import hashlib
import re
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

from cyclonedx.exception.model import InvalidUriException
from cyclonedx.model import XsUri
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.impact_analysis import (
    ImpactAnalysisAffectedStatus,
    ImpactAnalysisResponse,
    ImpactAnalysisState,
)
from cyclonedx.model.tool import ToolRepository
from cyclonedx.model.vulnerability import (
    BomTarget,
    BomTargetVersionRange,
    Vulnerability,
    VulnerabilityAdvisory,
    VulnerabilityAnalysis,
    VulnerabilityRating,
    VulnerabilityReference,
    VulnerabilityScoreSource,
    VulnerabilitySeverity,
    VulnerabilitySource,
)
from cyclonedx.output import make_outputter
from cyclonedx.schema import OutputFormat, SchemaVersion
from packageurl import PackageURL

__all__ = [
    "CYCLONEDX_SPEC",
    "SARIF_SCHEMA",
    "TOOL_INFORMATION_URI",
    "TOOL_NAME",
    "finding_fingerprint",
    "findings_to_cyclonedx_vex",
    "findings_to_sarif",
]

TOOL_NAME = "immune"
# The project has no public home yet; SARIF makes informationUri optional, so it is only
# written when a caller passes one.
TOOL_INFORMATION_URI = ""
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_VERSION = "2.1.0"
FINGERPRINT_KEY = "immuneFinding/v1"
CYCLONEDX_SPEC = SchemaVersion.V1_6
OSV_URL = "https://osv.dev/vulnerability/"

_SARIF_LEVEL = {
    "critical": "error",
    "high": "error",
    "medium": "warning",
    "low": "note",
    "none": "note",
    "unknown": "note",
}
_SEVERITY_RANK = {"unknown": 0, "none": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}
_SEMVER = re.compile(r"^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")
_CWE = re.compile(r"^\s*CWE-(\d+)\s*$", re.IGNORECASE)
_PURL_TYPE = {"pypi": "pypi", "npm": "npm"}

# Finding status -> VEX analysis state (anything not listed is still being triaged).
_VEX_STATE = {
    "resolved": ImpactAnalysisState.RESOLVED,
    "false_positive": ImpactAnalysisState.FALSE_POSITIVE,
    "risk_accepted": ImpactAnalysisState.EXPLOITABLE,
}
_UNAFFECTED_STATUSES = frozenset({"resolved", "false_positive"})


# region shared helpers


def _bare_version(tool_version: str) -> str:
    """``"immune 0.1.0"`` -> ``"0.1.0"``; any other string is returned stripped."""
    version = tool_version.strip()
    prefix = f"{TOOL_NAME} "
    return version[len(prefix):].strip() if version.lower().startswith(prefix) else version


def _osv_url(advisory_id: str) -> str:
    return OSV_URL + quote(advisory_id, safe="")


def _is_web_url(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("https://", "http://")) and (
        not any(c.isspace() for c in value)
    )


def _severity(finding: dict) -> str:
    severity = str(finding.get("severity") or "unknown").lower()
    return severity if severity in _SEVERITY_RANK else "unknown"


def _max_severity(findings: list[dict]) -> str:
    return max((_severity(f) for f in findings), key=_SEVERITY_RANK.__getitem__)


def _max_score(findings: list[dict]) -> float | None:
    scores = [float(f["cvss_score"]) for f in findings if f.get("cvss_score") is not None]
    return max(scores) if scores else None


def _first(findings: list[dict], key: str) -> Any:
    """The first truthy value of ``key`` among ``findings`` (None when there is none)."""
    return next((f[key] for f in findings if f.get(key)), None)


def _aliases(findings: list[dict]) -> list[str]:
    advisory = findings[0]["advisory"]
    seen: dict[str, None] = {}
    for finding in findings:
        for alias in finding.get("aliases") or ():
            if alias and alias != advisory:
                seen.setdefault(alias, None)
    return list(seen)


def _cwe_ids(findings: list[dict]) -> list[str]:
    seen: dict[str, None] = {}
    for finding in findings:
        for cwe in finding.get("cwe_ids") or ():
            match = _CWE.match(str(cwe))
            if match:
                seen.setdefault(f"CWE-{int(match.group(1))}", None)
    return list(seen)


def _by_advisory(findings: list[dict]) -> dict[str, list[dict]]:
    """Findings grouped by advisory id, in order of first appearance."""
    groups: dict[str, list[dict]] = {}
    for finding in findings:
        groups.setdefault(finding["advisory"], []).append(finding)
    return groups


def _fixed_text(fixed_in: list[str]) -> str:
    return f"fixed in {', '.join(fixed_in)}" if fixed_in else "no fixed version known"


def finding_fingerprint(finding: dict) -> str:
    """Stable hex digest of (manifest, package, version, advisory): one per finding."""
    key = "\x1f".join(
        str(finding.get(k) or "") for k in ("manifest", "package", "version", "advisory")
    )
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


# endregion
# region SARIF


def _sarif_rule(advisory: str, findings: list[dict]) -> dict:
    summary = _first(findings, "summary")
    aliases = _aliases(findings)
    references = [r for f in findings for r in (f.get("references") or ()) if _is_web_url(r)]
    help_uri = references[0] if references else _osv_url(advisory)
    score = _max_score(findings)
    severity = _max_severity(findings)

    tags = ["security", "vulnerability", *_cwe_ids(findings)]
    properties: dict[str, Any] = {"tags": tags, "aliases": aliases, "severity": severity}
    if score is not None:
        properties["security-severity"] = f"{score:.1f}"
    vector = _first(findings, "cvss_vector")
    if vector:
        properties["cvss_vector"] = vector

    title = f"{advisory} ({', '.join(aliases)})" if aliases else advisory
    help_text = "\n\n".join(filter(None, [title, summary, f"More information: {help_uri}"]))
    return {
        "id": advisory,
        "name": advisory,
        "shortDescription": {"text": summary or advisory},
        "fullDescription": {"text": f"{title}: {summary}" if summary else title},
        "helpUri": help_uri,
        "help": {"text": help_text},
        "defaultConfiguration": {"level": _SARIF_LEVEL[severity]},
        "properties": properties,
    }


def _sarif_uri(manifest: str) -> str:
    return quote(str(manifest).replace("\\", "/").lstrip("/"), safe="/@:+,;=!$&'()*~")


def _sarif_result(finding: dict, rule_index: int) -> dict:
    aliases = [a for a in finding.get("aliases") or () if a and a != finding["advisory"]]
    affected = f"{finding['advisory']} ({', '.join(aliases)})" if aliases else finding["advisory"]
    text = (
        f"{finding['package']} {finding['version']} is affected by {affected}; "
        f"{_fixed_text(list(finding.get('fixed_in') or ()))}"
    )

    physical: dict[str, Any] = {
        "artifactLocation": {"uri": _sarif_uri(finding["manifest"]), "uriBaseId": "%SRCROOT%"}
    }
    line = finding.get("line")
    if isinstance(line, int) and line >= 1:
        physical["region"] = {"startLine": line}

    return {
        "ruleId": finding["advisory"],
        "ruleIndex": rule_index,
        "level": _SARIF_LEVEL[_severity(finding)],
        "message": {"text": text},
        "locations": [{"physicalLocation": physical}],
        "partialFingerprints": {FINGERPRINT_KEY: finding_fingerprint(finding)},
        "properties": {
            "apv": finding["apv"],
            "priority": finding["priority"],
            "status": finding["status"],
            "severity": _severity(finding),
            "ecosystem": finding["ecosystem"],
            "package": finding["package"],
            "version": finding["version"],
            "fixedIn": list(finding.get("fixed_in") or ()),
        },
    }


def findings_to_sarif(
    findings: list[dict],
    *,
    tool_version: str,
    project_name: str,
    commit: str = "",
    repository_uri: str = "",
    information_uri: str = TOOL_INFORMATION_URI,
) -> dict:
    """A SARIF 2.1.0 log with one run: one rule per advisory, one result per finding.

    ``tool_version`` may be given as ``"immune 0.1.0"``; the tool name is dropped.
    ``versionControlProvenance`` is written when ``commit`` is given; SARIF requires a
    ``repositoryUri`` there, so without ``repository_uri`` a ``urn:immune:project:<name>``
    stands in for it.
    """
    groups = _by_advisory(findings)
    rule_index = {advisory: i for i, advisory in enumerate(groups)}
    version = _bare_version(tool_version)

    driver: dict[str, Any] = {"name": TOOL_NAME}
    if information_uri:
        driver["informationUri"] = information_uri
    if version:
        driver["version"] = version
        if _SEMVER.match(version):
            driver["semanticVersion"] = version
    driver["rules"] = [_sarif_rule(advisory, group) for advisory, group in groups.items()]

    run: dict[str, Any] = {
        "tool": {"driver": driver},
        "results": [_sarif_result(f, rule_index[f["advisory"]]) for f in findings],
        "columnKind": "unicodeCodePoints",
        "properties": {"project": project_name},
    }
    if commit:
        run["versionControlProvenance"] = [{
            "repositoryUri": repository_uri
            or f"urn:immune:project:{quote(project_name, safe='')}",
            "revisionId": commit,
            "mappedTo": {"uriBaseId": "%SRCROOT%"},
        }]
    return {"$schema": SARIF_SCHEMA, "version": SARIF_VERSION, "runs": [run]}


# endregion
# region CycloneDX VEX


def _purl(finding: dict) -> PackageURL:
    ecosystem = str(finding["ecosystem"])
    purl_type = _PURL_TYPE.get(ecosystem.lower())
    if purl_type is None:
        raise ValueError(f"unsupported ecosystem {ecosystem!r} for {finding['package']!r}")
    name, namespace = str(finding["package"]), None
    if purl_type == "npm" and name.startswith("@") and "/" in name:
        namespace, name = name.split("/", 1)
    return PackageURL(
        type=purl_type, namespace=namespace, name=name, version=finding.get("version") or None
    )


def _component(finding: dict, purl: PackageURL) -> Component:
    name, group = str(finding["package"]), None
    if purl.type == "npm" and purl.namespace:
        group, name = name.split("/", 1)
    return Component(
        type=ComponentType.LIBRARY,
        name=name,
        group=group,
        version=finding.get("version") or None,
        purl=purl,
        bom_ref=purl.to_string(),
    )


def _xs_uri(value: str) -> XsUri | None:
    try:
        return XsUri(value)
    except InvalidUriException:
        return None


def _alias_reference(alias: str) -> VulnerabilityReference:
    if alias.upper().startswith("CVE-"):
        source = VulnerabilitySource(
            name="NVD", url=XsUri(f"https://nvd.nist.gov/vuln/detail/{quote(alias, safe='')}")
        )
    elif alias.upper().startswith("GHSA-"):
        source = VulnerabilitySource(
            name="GitHub", url=XsUri(f"https://github.com/advisories/{quote(alias, safe='')}")
        )
    else:
        source = VulnerabilitySource(name="OSV", url=XsUri(_osv_url(alias)))
    return VulnerabilityReference(id=alias, source=source)


def _rating(findings: list[dict], source: VulnerabilitySource) -> VulnerabilityRating | None:
    score = _max_score(findings)
    severity = _max_severity(findings)
    vector = _first(findings, "cvss_vector")
    if score is None and not vector and severity == "unknown":
        return None
    method = None
    if vector:
        method = VulnerabilityScoreSource.get_from_vector(vector)
    try:
        decimal_score = None if score is None else Decimal(str(score))
    except InvalidOperation:
        decimal_score = None
    return VulnerabilityRating(
        source=source,
        score=decimal_score,
        severity=VulnerabilitySeverity(severity),
        method=method,
        vector=vector or None,
    )


def _analysis(findings: list[dict]) -> VulnerabilityAnalysis:
    statuses = {str(f.get("status") or "") for f in findings}
    states = {_VEX_STATE.get(s, ImpactAnalysisState.IN_TRIAGE) for s in statuses}
    # One vulnerability can hit several components; when their findings disagree the
    # honest summary is "still being triaged" (each target's version carries its own status).
    state = states.pop() if len(states) == 1 else ImpactAnalysisState.IN_TRIAGE
    responses = (
        [ImpactAnalysisResponse.WILL_NOT_FIX] if statuses == {"risk_accepted"} else []
    )
    details = [
        f"{f['apv']} ({f['status']}): {f['package']} {f['version']} in {f['manifest']}, "
        f"{_fixed_text(list(f.get('fixed_in') or ()))}."
        for f in findings
    ]
    return VulnerabilityAnalysis(state=state, responses=responses, detail="\n".join(details))


def _vulnerability(
    advisory: str, findings: list[dict], refs: list[tuple[dict, str]]
) -> Vulnerability:
    source = VulnerabilitySource(name="OSV", url=XsUri(_osv_url(advisory)))
    rating = _rating(findings, source)
    cwes = sorted({int(c.split("-", 1)[1]) for c in _cwe_ids(findings)})

    advisories = []
    for url in dict.fromkeys(r for f in findings for r in (f.get("references") or ())):
        xs = _xs_uri(url) if _is_web_url(url) else None
        if xs is not None:
            advisories.append(VulnerabilityAdvisory(url=xs))

    targets: dict[str, list[BomTargetVersionRange]] = {}
    for finding, ref in refs:
        versions = targets.setdefault(ref, [])
        if finding.get("version"):
            status = (
                ImpactAnalysisAffectedStatus.UNAFFECTED
                if finding.get("status") in _UNAFFECTED_STATUSES
                else ImpactAnalysisAffectedStatus.AFFECTED
            )
            versions.append(BomTargetVersionRange(version=finding["version"], status=status))

    upgrades = dict.fromkeys(
        f"Upgrade {f['package']} {f['version']} to {f['fixed_in'][0]} or later."
        for f in findings if f.get("fixed_in") and f.get("status") not in _UNAFFECTED_STATUSES
    )
    return Vulnerability(
        bom_ref=advisory,
        id=advisory,
        source=source,
        references=[_alias_reference(a) for a in _aliases(findings)],
        ratings=[rating] if rating else [],
        cwes=cwes,
        description=_first(findings, "summary"),
        recommendation=" ".join(upgrades) or None,
        advisories=advisories,
        analysis=_analysis(findings),
        affects=[BomTarget(ref=ref, versions=versions) for ref, versions in targets.items()],
    )


def findings_to_cyclonedx_vex(
    findings: list[dict], *, project_name: str, tool_version: str
) -> str:
    """A CycloneDX (:data:`CYCLONEDX_SPEC`) JSON VEX document for ``findings``.

    Components are deduplicated by package URL (ecosystem, normalised name, version);
    each vulnerability (one per advisory) ``affects`` every component it hits. The project
    is the metadata component, and the dependency graph is flat: it depends on each
    affected component. Raises ``ValueError`` for an ecosystem other than PyPI or npm.
    """
    components: dict[str, Component] = {}
    refs_by_advisory: dict[str, list[tuple[dict, str]]] = {}
    for finding in findings:
        purl = _purl(finding)
        ref = purl.to_string()
        if ref not in components:
            components[ref] = _component(finding, purl)
        refs_by_advisory.setdefault(finding["advisory"], []).append((finding, ref))

    version = _bare_version(tool_version) or None
    project = Component(
        type=ComponentType.APPLICATION,
        name=project_name,
        bom_ref=f"project:{project_name}",
    )
    tool = Component(type=ComponentType.APPLICATION, name=TOOL_NAME, version=version)
    bom = Bom(
        metadata=BomMetaData(component=project, tools=ToolRepository(components=[tool])),
        components=components.values(),
        vulnerabilities=[
            _vulnerability(advisory, group, refs_by_advisory[advisory])
            for advisory, group in _by_advisory(findings).items()
        ],
    )
    bom.register_dependency(project, components.values())
    return make_outputter(bom, OutputFormat.JSON, CYCLONEDX_SPEC).output_as_string(indent=2)


# endregion
