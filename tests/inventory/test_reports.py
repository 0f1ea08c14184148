"""SARIF 2.1.0 and CycloneDX VEX renderings of scan findings (pure functions, no Django)."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
from cyclonedx.model.bom import Bom

from apps.inventory.reports import (
    FINGERPRINT_KEY,
    SARIF_SCHEMA,
    finding_fingerprint,
    findings_to_cyclonedx_vex,
    findings_to_sarif,
)

VECTOR_31 = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"


def _finding(**overrides: Any) -> dict:
    finding = {
        "apv": "APV-20261122-0001",
        "package": "pyyaml",
        "version": "5.3.1",
        "ecosystem": "PyPI",
        "manifest": "requirements.txt",
        "line": 3,
        "advisory": "PYSEC-2021-142",
        "aliases": ["CVE-2020-14343"],
        "severity": "critical",
        "cvss_score": 9.8,
        "fixed_in": ["5.4"],
        "priority": 9,
        "status": "open",
        "summary": "Improper input validation in PyYAML full_load",
        "cwe_ids": ["CWE-20"],
        "cvss_vector": VECTOR_31,
        "references": ["https://github.com/yaml/pyyaml/issues/420"],
    }
    finding.update(overrides)
    return finding


@pytest.fixture
def findings() -> list[dict]:
    """Two advisories on pyyaml (one located nowhere in particular) and one on jinja2."""
    return [
        _finding(),
        _finding(
            apv="APV-20261122-0002", line=None, advisory="GHSA-8q59-q68h-6hv4",
            aliases=["CVE-2020-1747"], severity="medium", cvss_score=None, fixed_in=[],
            priority=4, summary="", cwe_ids=[], cvss_vector="", references=[],
        ),
        _finding(
            apv="APV-20261122-0003", package="Jinja2", version="2.10", manifest="web/req.txt",
            line=7, advisory="GHSA-462w-v97r-4m45", aliases=["CVE-2019-10906"], severity="low",
            cvss_score=3.5, fixed_in=["2.10.1", "3.0.0"], priority=2,
            summary="Jinja2 sandbox escape", cwe_ids=["CWE-693"],
            cvss_vector="CVSS:3.0/AV:N/AC:H/PR:N/UI:R/S:U/C:L/I:N/A:N", references=[],
        ),
    ]


# region SARIF

_LEVELS = {"none", "note", "warning", "error"}


def _message(value: Any, where: str) -> None:
    assert isinstance(value, dict), where
    assert isinstance(value.get("text") or value.get("id"), str), f"{where}: text or id"


def _check_sarif(log: dict) -> None:
    """The SARIF 2.1.0 schema's required properties and the constraints we rely on."""
    assert json.loads(json.dumps(log)) == log  # plain JSON data
    assert log["$schema"] == SARIF_SCHEMA
    assert log["version"] == "2.1.0"
    assert isinstance(log["runs"], list)
    for run in log["runs"]:
        driver = run["tool"]["driver"]
        assert isinstance(driver["name"], str) and driver["name"]
        # informationUri is optional in SARIF; when present it must be an absolute URL.
        assert re.match(r"^https?://", driver.get("informationUri", "https://x"))
        rules = driver.get("rules", [])
        rule_ids = [rule["id"] for rule in rules]
        assert len(rule_ids) == len(set(rule_ids)), "rule ids are unique"
        for rule in rules:
            assert isinstance(rule["id"], str) and rule["id"]
            for key in ("shortDescription", "fullDescription", "help"):
                if key in rule:
                    assert isinstance(rule[key]["text"], str), f"{rule['id']}.{key}.text"
            assert re.match(r"^https?://\S+$", rule["helpUri"])
            tags = rule["properties"]["tags"]
            assert len(tags) == len(set(tags)) and all(isinstance(t, str) for t in tags)
            if "security-severity" in rule["properties"]:
                score = rule["properties"]["security-severity"]
                assert isinstance(score, str) and 0.0 <= float(score) <= 10.0
        for result in run["results"]:
            _message(result["message"], "result.message")
            assert result["level"] in _LEVELS
            assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
            for location in result["locations"]:
                physical = location["physicalLocation"]
                assert isinstance(physical["artifactLocation"]["uri"], str)
                if "region" in physical:
                    assert isinstance(physical["region"]["startLine"], int)
                    assert physical["region"]["startLine"] >= 1
            assert all(isinstance(v, str) for v in result["partialFingerprints"].values())
        for details in run.get("versionControlProvenance", []):
            assert isinstance(details["repositoryUri"], str) and details["repositoryUri"]


def test_sarif_structure(findings: list[dict]) -> None:
    log = findings_to_sarif(
        findings, tool_version="immune 0.1.0", project_name="demo", commit="0123abc"
    )
    _check_sarif(log)
    [run] = log["runs"]
    driver = run["tool"]["driver"]
    assert (driver["name"], driver["version"], driver["semanticVersion"]) == (
        "immune", "0.1.0", "0.1.0")
    assert [r["id"] for r in driver["rules"]] == [
        "PYSEC-2021-142", "GHSA-8q59-q68h-6hv4", "GHSA-462w-v97r-4m45"]

    pysec, ghsa, jinja = driver["rules"]
    assert pysec["shortDescription"]["text"] == "Improper input validation in PyYAML full_load"
    assert pysec["helpUri"] == "https://github.com/yaml/pyyaml/issues/420"
    assert pysec["properties"]["security-severity"] == "9.8"
    assert pysec["properties"]["tags"] == ["security", "vulnerability", "CWE-20"]
    # No summary, score or reference: the id and the OSV page stand in.
    assert ghsa["shortDescription"]["text"] == "GHSA-8q59-q68h-6hv4"
    assert ghsa["helpUri"] == "https://osv.dev/vulnerability/GHSA-8q59-q68h-6hv4"
    assert "security-severity" not in ghsa["properties"]
    assert jinja["properties"]["security-severity"] == "3.5"
    assert "CWE-693" in jinja["properties"]["tags"]

    first, second, third = run["results"]
    assert [r["ruleId"] for r in run["results"]] == [
        "PYSEC-2021-142", "GHSA-8q59-q68h-6hv4", "GHSA-462w-v97r-4m45"]
    assert [r["ruleIndex"] for r in run["results"]] == [0, 1, 2]
    assert first["message"]["text"] == (
        "pyyaml 5.3.1 is affected by PYSEC-2021-142 (CVE-2020-14343); fixed in 5.4")
    assert second["message"]["text"] == (
        "pyyaml 5.3.1 is affected by GHSA-8q59-q68h-6hv4 (CVE-2020-1747); "
        "no fixed version known")
    assert third["message"]["text"] == (
        "Jinja2 2.10 is affected by GHSA-462w-v97r-4m45 (CVE-2019-10906); "
        "fixed in 2.10.1, 3.0.0")

    location = first["locations"][0]["physicalLocation"]
    assert location == {
        "artifactLocation": {"uri": "requirements.txt", "uriBaseId": "%SRCROOT%"},
        "region": {"startLine": 3},
    }
    assert second["locations"][0]["physicalLocation"] == {
        "artifactLocation": {"uri": "requirements.txt", "uriBaseId": "%SRCROOT%"}}
    assert third["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "web/req.txt"

    assert first["properties"]["apv"] == "APV-20261122-0001"
    assert (first["properties"]["priority"], first["properties"]["status"]) == (9, "open")
    assert third["properties"]["apv"] == "APV-20261122-0003"

    assert run["versionControlProvenance"] == [{
        "repositoryUri": "urn:immune:project:demo", "revisionId": "0123abc",
        "mappedTo": {"uriBaseId": "%SRCROOT%"}}]
    assert run["properties"]["project"] == "demo"


@pytest.mark.parametrize(("severity", "level"), [
    ("critical", "error"), ("high", "error"), ("medium", "warning"),
    ("low", "note"), ("none", "note"), ("unknown", "note"),
])
def test_sarif_levels(severity: str, level: str) -> None:
    log = findings_to_sarif([_finding(severity=severity)], tool_version="0.1.0",
                            project_name="demo")
    assert log["runs"][0]["results"][0]["level"] == level


def test_sarif_fingerprints_stable_and_distinct(findings: list[dict]) -> None:
    def prints(log: dict) -> list[str]:
        return [r["partialFingerprints"][FINGERPRINT_KEY] for r in log["runs"][0]["results"]]

    once = prints(findings_to_sarif(findings, tool_version="0.1.0", project_name="demo"))
    # Another call, other commit, other priority/status/line: same findings, same prints.
    moved = copy.deepcopy(findings)
    for finding in moved:
        finding.update(priority=0, status="pending_review", line=99)
    again = prints(findings_to_sarif(moved, tool_version="0.2.0", project_name="demo",
                                     commit="feedbeef"))
    assert once == again
    assert len(set(once)) == 3
    assert all(re.fullmatch(r"[0-9a-f]{64}", p) for p in once)
    assert once[0] == finding_fingerprint(findings[0])
    # Each of (manifest, package, version, advisory) is part of the identity.
    for key, value in [("manifest", "other.txt"), ("package", "PyYAML"), ("version", "5.4"),
                       ("advisory", "PYSEC-0000-1")]:
        assert finding_fingerprint({**findings[0], key: value}) != once[0], key


def test_sarif_without_commit_and_with_repository_uri(findings: list[dict]) -> None:
    run = findings_to_sarif(findings, tool_version="0.1.0", project_name="demo")["runs"][0]
    assert "versionControlProvenance" not in run
    run = findings_to_sarif(
        findings, tool_version="0.1.0", project_name="demo", commit="abc",
        repository_uri="https://git.example.org/demo.git",
    )["runs"][0]
    assert run["versionControlProvenance"][0]["repositoryUri"] == (
        "https://git.example.org/demo.git")


def test_sarif_empty_and_odd_paths() -> None:
    log = findings_to_sarif([], tool_version="dev build", project_name="demo")
    _check_sarif(log)
    driver = log["runs"][0]["tool"]["driver"]
    assert (driver["rules"], log["runs"][0]["results"]) == ([], [])
    assert driver["version"] == "dev build" and "semanticVersion" not in driver

    log = findings_to_sarif([_finding(manifest="sub dir\\requirements.txt", line=0)],
                            tool_version="0.1.0", project_name="demo")
    _check_sarif(log)
    physical = log["runs"][0]["results"][0]["locations"][0]["physicalLocation"]
    assert physical == {
        "artifactLocation": {"uri": "sub%20dir/requirements.txt", "uriBaseId": "%SRCROOT%"}}


# endregion
# region CycloneDX VEX


def _vex(findings: list[dict]) -> dict:
    return json.loads(findings_to_cyclonedx_vex(
        findings, project_name="demo", tool_version="immune 0.1.0"))


def test_vex_document(findings: list[dict]) -> None:
    doc = _vex(findings)
    assert doc["bomFormat"] == "CycloneDX"
    assert doc["specVersion"] == "1.6"
    assert doc["metadata"]["component"]["type"] == "application"
    assert doc["metadata"]["component"]["name"] == "demo"
    assert doc["metadata"]["tools"]["components"][0]["name"] == "immune"
    assert doc["metadata"]["tools"]["components"][0]["version"] == "0.1.0"

    components = {c["purl"]: c for c in doc["components"]}
    assert sorted(components) == ["pkg:pypi/jinja2@2.10", "pkg:pypi/pyyaml@5.3.1"]
    pyyaml = components["pkg:pypi/pyyaml@5.3.1"]
    assert (pyyaml["name"], pyyaml["version"], pyyaml["type"]) == ("pyyaml", "5.3.1", "library")
    assert pyyaml["bom-ref"] == "pkg:pypi/pyyaml@5.3.1"
    assert components["pkg:pypi/jinja2@2.10"]["name"] == "Jinja2"

    vulns = {v["id"]: v for v in doc["vulnerabilities"]}
    assert sorted(vulns) == ["GHSA-462w-v97r-4m45", "GHSA-8q59-q68h-6hv4", "PYSEC-2021-142"]

    pysec = vulns["PYSEC-2021-142"]
    assert pysec["source"] == {
        "name": "OSV", "url": "https://osv.dev/vulnerability/PYSEC-2021-142"}
    assert pysec["references"] == [{"id": "CVE-2020-14343", "source": {
        "name": "NVD", "url": "https://nvd.nist.gov/vuln/detail/CVE-2020-14343"}}]
    [rating] = pysec["ratings"]
    assert (rating["score"], rating["severity"], rating["method"]) == (9.8, "critical", "CVSSv31")
    assert rating["vector"].endswith("AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H")
    assert pysec["cwes"] == [20]
    assert pysec["description"] == "Improper input validation in PyYAML full_load"
    assert pysec["affects"] == [{"ref": "pkg:pypi/pyyaml@5.3.1",
                                 "versions": [{"version": "5.3.1", "status": "affected"}]}]
    assert pysec["analysis"]["state"] == "in_triage"
    assert "fixed in 5.4" in pysec["analysis"]["detail"]
    assert "APV-20261122-0001" in pysec["analysis"]["detail"]

    ghsa = vulns["GHSA-8q59-q68h-6hv4"]
    assert ghsa["ratings"][0]["severity"] == "medium"
    assert "score" not in ghsa["ratings"][0] and "method" not in ghsa["ratings"][0]
    assert "no fixed version known" in ghsa["analysis"]["detail"]

    jinja = vulns["GHSA-462w-v97r-4m45"]
    assert jinja["ratings"][0]["method"] == "CVSSv3"
    assert jinja["ratings"][0]["score"] == 3.5
    assert jinja["affects"][0]["ref"] == "pkg:pypi/jinja2@2.10"

    # Every affects ref resolves to a component; the project depends on each of them.
    refs = {c["bom-ref"] for c in doc["components"]}
    assert all(a["ref"] in refs for v in doc["vulnerabilities"] for a in v["affects"])
    root = next(d for d in doc["dependencies"] if d["ref"] == "project:demo")
    assert sorted(root["dependsOn"]) == sorted(refs)


def test_vex_one_vulnerability_affects_every_component_it_hits() -> None:
    findings = [
        _finding(),
        # Same package spelled differently in another manifest: the same component.
        _finding(apv="APV-20261122-0002", package="PyYAML", manifest="docs/requirements.txt"),
        _finding(apv="APV-20261122-0003", package="@acme/left-pad", version="1.3.0",
                 ecosystem="npm", manifest="package-lock.json", status="resolved"),
        _finding(apv="APV-20261122-0004", package="@acme/left-pad", version="1.3.0",
                 ecosystem="npm", manifest="package-lock.json", advisory="GHSA-aaaa-bbbb-cccc",
                 aliases=[], cvss_vector="CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/"
                 "SC:N/SI:N/SA:N", cvss_score=9.3, status="open"),
    ]
    doc = _vex(findings)
    assert sorted(c["purl"] for c in doc["components"]) == [
        "pkg:npm/%40acme/left-pad@1.3.0", "pkg:pypi/pyyaml@5.3.1"]
    npm = next(c for c in doc["components"] if c["purl"].startswith("pkg:npm/"))
    assert (npm["group"], npm["name"]) == ("@acme", "left-pad")

    vulns = {v["id"]: v for v in doc["vulnerabilities"]}
    assert len(vulns) == 2
    pysec = vulns["PYSEC-2021-142"]
    affects = {a["ref"]: a["versions"] for a in pysec["affects"]}
    assert affects == {
        "pkg:pypi/pyyaml@5.3.1": [{"version": "5.3.1", "status": "affected"}],
        "pkg:npm/%40acme/left-pad@1.3.0": [{"version": "1.3.0", "status": "unaffected"}],
    }
    # Open on one component, resolved on the other: still in triage overall.
    assert pysec["analysis"]["state"] == "in_triage"
    assert vulns["GHSA-aaaa-bbbb-cccc"]["ratings"][0]["method"] == "CVSSv4"


@pytest.mark.parametrize(("status", "state", "responses"), [
    ("resolved", "resolved", None),
    ("false_positive", "false_positive", None),
    ("risk_accepted", "exploitable", ["will_not_fix"]),
    ("open", "in_triage", None),
    ("pending_review", "in_triage", None),
    ("escalated", "in_triage", None),
])
def test_vex_analysis_state(status: str, state: str, responses: list[str] | None) -> None:
    [vuln] = _vex([_finding(status=status)])["vulnerabilities"]
    assert vuln["analysis"]["state"] == state
    assert vuln["analysis"].get("response") == responses
    assert "fixed in 5.4" in vuln["analysis"]["detail"]


def test_vex_round_trips_through_the_library(findings: list[dict]) -> None:
    assert callable(getattr(Bom, "from_json", None))
    bom = Bom.from_json(_vex(findings))  # type: ignore[attr-defined]
    assert isinstance(bom, Bom)
    assert bom.metadata.component is not None and bom.metadata.component.name == "demo"
    assert sorted(str(c.purl) for c in bom.components) == [
        "pkg:pypi/jinja2@2.10", "pkg:pypi/pyyaml@5.3.1"]
    vulns = {v.id: v for v in bom.vulnerabilities}
    assert vulns["PYSEC-2021-142"].analysis.state.value == "in_triage"
    [rating] = vulns["PYSEC-2021-142"].ratings
    assert (float(rating.score), rating.severity.value) == (9.8, "critical")


def test_vex_validates_against_the_bundled_schema(findings: list[dict]) -> None:
    pytest.importorskip("jsonschema")  # optional dependency of cyclonedx-python-lib
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    text = findings_to_cyclonedx_vex(findings, project_name="demo", tool_version="0.1.0")
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    empty = findings_to_cyclonedx_vex([], project_name="demo", tool_version="0.1.0")
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(empty) is None


def test_vex_rejects_unknown_ecosystems() -> None:
    with pytest.raises(ValueError, match="unsupported ecosystem"):
        findings_to_cyclonedx_vex([_finding(ecosystem="Go")], project_name="demo",
                                  tool_version="0.1.0")


# endregion
