"""Output of ``manage.py scan``: a table for people, JSON, SARIF 2.1.0 and CycloneDX for tools.

Pure rendering (no ORM): each function takes the :class:`~apps.inventory.adhoc.AdhocScan`
and the findings the gate kept, and returns the text to write.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote

from cyclonedx.model import XsUri
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.impact_analysis import ImpactAnalysisAffectedStatus
from cyclonedx.model.tool import ToolRepository
from cyclonedx.model.vulnerability import (
    BomTarget,
    BomTargetVersionRange,
    Vulnerability,
    VulnerabilityRating,
    VulnerabilityReference,
    VulnerabilityScoreSource,
    VulnerabilitySeverity,
    VulnerabilitySource,
)
from cyclonedx.output import make_outputter
from cyclonedx.schema import OutputFormat
from packageurl import PackageURL
from prettytable import PrettyTable

from apps.inventory.adhoc import AdhocFinding, AdhocScan
from apps.inventory.manifests.records import normalise_name
from apps.inventory.reports import CYCLONEDX_SPEC, TOOL_NAME, findings_to_sarif

FORMATS = ("table", "json", "sarif", "cyclonedx")
TOOL_VERSION = "0.1.0"
_OSV_URL = "https://osv.dev/vulnerability/"


def _short(values: list[str], limit: int = 2) -> str:
    more = len(values) - limit
    return ", ".join(values[:limit]) + (f" (+{more})" if more > 0 else "")


def render_table(scan: AdhocScan, findings: list[AdhocFinding], *, failing: int,
                 ignored: list[AdhocFinding], threshold: str) -> str:
    """Findings most severe first, then one summary line."""
    lines = []
    if findings:
        table = PrettyTable(["PACKAGE", "VERSION", "ADVISORY", "ALIASES", "SEVERITY", "CVSS",
                             "FIXED IN", "WHERE"])
        table.align = "l"
        for f in findings:
            advisory = f.advisory + (" (possibly)" if f.match_reason else "")
            table.add_row([
                f.package, f.version, advisory, _short(f.aliases), f.severity,
                "" if f.cvss_score is None else f"{f.cvss_score:.1f}", _short(f.fixed_in) or "-",
                f"{f.manifest}:{f.line}" if f.line else f.manifest,
            ])
        lines.append(table.get_string())
        for f in findings:
            if f.match_reason:
                lines.append(f"{f.advisory} on {f.package} {f.version}: {f.match_reason}")
    packages = len({(f.ecosystem, f.package.lower(), f.version) for f in findings})
    summary = (f"{len(findings)} finding(s) in {packages} package(s); "
               f"{scan.pinned} pinned of {len(scan.dependencies)} dependencies in "
               f"{len(scan.manifests)} manifest(s)")
    if ignored:
        summary += f"; {len(ignored)} ignored"
    summary += f"; {failing} at or above {threshold}" if findings else ""
    lines.append(summary)
    return "\n".join(lines) + "\n"


def render_json(scan: AdhocScan, findings: list[AdhocFinding], *, failing: list[AdhocFinding],
                ignored: list[AdhocFinding], options: dict[str, Any]) -> str:
    failing_keys = {id(f) for f in failing}
    return json.dumps({
        "tool": {"name": TOOL_NAME, "version": TOOL_VERSION},
        "targets": scan.targets,
        "options": options,
        "manifests": scan.manifests,
        "dependencies": len(scan.dependencies),
        "pinned": scan.pinned,
        "errors": scan.errors,
        "findings": [{**f.as_dict(), "fails_gate": id(f) in failing_keys} for f in findings],
        "ignored": [{"advisory": f.advisory, "package": f.package, "version": f.version,
                     "manifest": f.manifest} for f in ignored],
        "failed": bool(failing),
    }, indent=2) + "\n"


def _sarif_finding(finding: AdhocFinding) -> dict:
    # The keys reports.findings_to_sarif reads; an ad-hoc finding has no APV and no status.
    return {**finding.as_dict(), "apv": "", "status": "open"}


def render_sarif(scan: AdhocScan, findings: list[AdhocFinding]) -> str:
    """SARIF 2.1.0 (one rule per advisory, one result per finding), as scan_project writes it,
    with the paths as given: relative ones against ``%SRCROOT%``, absolute ones as file URIs."""
    log = findings_to_sarif([_sarif_finding(f) for f in findings],
                            tool_version=TOOL_VERSION, project_name="ad-hoc scan")
    run = log["runs"][0]
    run["properties"] = {"targets": scan.targets}
    for finding, result in zip(findings, run["results"], strict=True):
        properties = result["properties"]
        properties.pop("apv", None)
        properties.pop("status", None)
        if finding.match_reason:
            properties["matchReason"] = finding.match_reason
        if PurePosixPath(finding.manifest).is_absolute():
            location = result["locations"][0]["physicalLocation"]["artifactLocation"]
            location.pop("uriBaseId", None)
            location["uri"] = PurePosixPath(finding.manifest).as_uri()
    return json.dumps(log, indent=2) + "\n"


def _purl(ecosystem: str, name: str, version: str | None) -> PackageURL:
    if ecosystem.lower() == "npm":
        namespace, _, bare = name.rpartition("/") if name.startswith("@") else ("", "", name)
        return PackageURL(type="npm", namespace=namespace or None, name=bare, version=version)
    return PackageURL(type="pypi", name=name, version=version)


def _rating(finding: AdhocFinding, source: VulnerabilitySource) -> VulnerabilityRating:
    return VulnerabilityRating(
        source=source,
        score=None if finding.cvss_score is None else Decimal(str(finding.cvss_score)),
        severity=VulnerabilitySeverity(finding.severity),
        method=(VulnerabilityScoreSource.get_from_vector(finding.cvss_vector)
                if finding.cvss_vector else None),
        vector=finding.cvss_vector or None,
    )


def _reference(alias: str) -> VulnerabilityReference:
    return VulnerabilityReference(id=alias, source=VulnerabilitySource(
        name="OSV", url=XsUri(_OSV_URL + quote(alias, safe=""))))


def render_cyclonedx(scan: AdhocScan, findings: list[AdhocFinding]) -> str:
    """A CycloneDX BOM (JSON, :data:`~apps.inventory.reports.CYCLONEDX_SPEC`): a component
    ``pkg:pypi/name@version`` (or npm) per pinned dependency scanned, and a vulnerability per
    advisory found, ``affects`` naming the components it hits."""
    components: dict[str, Component] = {}
    for dep in scan.dependencies:
        if not dep.version:
            continue  # a purl without a version names no release
        purl = _purl(dep.ecosystem, dep.normalised_name, dep.version)
        ref = purl.to_string()
        components.setdefault(ref, Component(
            type=ComponentType.LIBRARY, name=purl.name, group=purl.namespace,
            version=dep.version, purl=purl, bom_ref=ref))

    by_advisory: dict[str, list[AdhocFinding]] = {}
    for finding in findings:
        by_advisory.setdefault(finding.advisory, []).append(finding)
    vulnerabilities = []
    for advisory, group in by_advisory.items():
        first = group[0]
        source = VulnerabilitySource(name="OSV", url=XsUri(_OSV_URL + quote(advisory, safe="")))
        refs: dict[str, list[BomTargetVersionRange]] = {}
        for f in group:
            ref = _purl(f.ecosystem, normalise_name(f.ecosystem, f.package), f.version).to_string()
            versions = refs.setdefault(ref, [])
            if all(v.version != f.version for v in versions):
                versions.append(BomTargetVersionRange(
                    version=f.version, status=ImpactAnalysisAffectedStatus.AFFECTED))
        fixes = dict.fromkeys(f"Upgrade {f.package} {f.version} to {f.fixed_in[0]} or later."
                              for f in group if f.fixed_in)
        vulnerabilities.append(Vulnerability(
            bom_ref=advisory, id=advisory, source=source,
            references=[_reference(a) for a in first.aliases if a != advisory],
            ratings=[_rating(first, source)],
            cwes=sorted({int(c.split("-", 1)[1]) for c in first.cwe_ids
                         if c.upper().startswith("CWE-") and c.split("-", 1)[1].isdigit()}),
            description=first.summary or None,
            detail=first.match_reason or None,
            recommendation=" ".join(fixes) or None,
            affects=[BomTarget(ref=ref, versions=versions) for ref, versions in refs.items()],
        ))
    tool = Component(type=ComponentType.APPLICATION, name=TOOL_NAME, version=TOOL_VERSION)
    bom = Bom(metadata=BomMetaData(tools=ToolRepository(components=[tool])),
              components=components.values(), vulnerabilities=vulnerabilities)
    return make_outputter(bom, OutputFormat.JSON, CYCLONEDX_SPEC).output_as_string(indent=2) + "\n"
