"""``manage.py scan``: an ad-hoc scan of files and folders as a CI gate (issue 14), and the
exit codes it shares with ``scan_project``: 0 clean, 1 findings at or above the threshold,
2 a usage or input error."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from apps.advisories.services import advisories_import
from apps.inventory.models import Dependency, Project
from apps.inventory.services import project_add
from apps.reviews.models import APV
from tests.factories import DEMO_ADVISORIES, ROOT, TEST_ADVISORIES, make_repo

# PYSEC-2021-142 (demo set): PyYAML full_load RCE, CVE-2020-14343, no CVSS -> "unknown".
UNKNOWN_PIN = "PyYAML==5.3.1\n"
# GHSA-2c7v-qcjp-4mg2 (tests/advisories/data): critical, CVSS 9.8, CVE-2024-90001.
CRITICAL_PIN = "Example.Web_Framework==2.4.0\n"
MEDIUM_PIN = "medpkg==1.0\n"
POSSIBLE_PIN = "calpkg==1.0\n"
CLEAN_PINS = "PyYAML==5.4\nExample.Web_Framework==2.4.1\nmedpkg==2.0\n"
MEDIUM = "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:U/C:L/I:N/A:N"  # 4.3


@pytest.fixture
def advisories(tmp_path, db):
    feed = tmp_path / "feed"
    feed.mkdir()
    records = [
        {"id": "PYSEC-2099-1", "modified": "2024-01-01T00:00:00Z", "aliases": ["CVE-2099-1"],
         "summary": "medpkg leaks a little", "severity": [{"type": "CVSS_V3", "score": MEDIUM}],
         "affected": [{"package": {"ecosystem": "PyPI", "name": "medpkg"}, "ranges": [
             {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.1"}]}]}]},
        # A range event that is no PEP 440 version and no versions list: every version of
        # calpkg is *possibly* affected (apps/advisories/osv/matching.py).
        {"id": "PYSEC-2099-2", "modified": "2024-01-01T00:00:00Z", "summary": "calpkg flaw",
         "affected": [{"package": {"ecosystem": "PyPI", "name": "calpkg"}, "ranges": [
             {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "0.2.0-n653"}]}]}]},
    ]
    for record in records:
        (feed / f"{record['id']}.json").write_text(json.dumps(record))
    advisories_import(sources=[str(DEMO_ADVISORIES / "pyyaml"),
                               str(TEST_ADVISORIES / "ghsa-cvss3.json"), str(feed)],
                      source_name="test")


def write(tmp_path, name: str, text: str | bytes):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


def scan(*args: str) -> int:
    """The exit code ``manage.py scan`` gives (call_command raises what run_from_argv turns
    into ``sys.exit(returncode)``)."""
    try:
        call_command("scan", *args)
    except CommandError as exc:
        return exc.returncode
    return 0


def scan_json(capsys, *args: str) -> tuple[int, dict]:
    capsys.readouterr()
    code = scan(*args, "--format", "json")
    return code, json.loads(capsys.readouterr().out)


# region exit codes


def test_clean_scan_exits_0_and_writes_no_rows(tmp_path, advisories, capsys):
    assert scan(write(tmp_path, "requirements.txt", CLEAN_PINS)) == 0
    assert "0 finding(s)" in capsys.readouterr().out
    assert scan(write(tmp_path, "vuln/requirements.txt", UNKNOWN_PIN + CRITICAL_PIN)) == 1
    # Only the advisories are read: no project, dependency or APV is ever written.
    assert (Project.objects.count(), Dependency.objects.count(), APV.objects.count()) == (0, 0, 0)


def test_any_finding_exits_1_by_default_with_a_table(tmp_path, advisories, capsys):
    path = write(tmp_path, "requirements.txt", UNKNOWN_PIN + CRITICAL_PIN + MEDIUM_PIN)
    with pytest.raises(CommandError, match=r"3 finding\(s\) at or above any severity") as info:
        call_command("scan", path)
    assert info.value.returncode == 1
    table = capsys.readouterr().out
    for expected in ("PYSEC-2021-142", "CVE-2020-14343", "GHSA-2c7v-qcjp-4mg2", "critical",
                     "9.8", "2.4.1", "PYSEC-2099-1", f"{path}:2"):
        assert expected in table
    # Most severe first.
    assert table.index("GHSA-2c7v-qcjp-4mg2") < table.index("PYSEC-2099-1")


def test_findings_below_the_threshold_pass(tmp_path, advisories):
    path = write(tmp_path, "requirements.txt", MEDIUM_PIN)
    assert scan(path, "--fail-on", "high") == 0
    assert scan(path, "--fail-on", "critical") == 0
    assert scan(path, "--fail-on", "medium") == 1
    assert scan(path, "--fail-on", "low") == 1
    critical = write(tmp_path, "crit/requirements.txt", CRITICAL_PIN)
    assert scan(critical, "--fail-on", "critical") == 1


def test_unknown_severity_fails_every_threshold_unless_ignored(tmp_path, advisories, capsys):
    path = write(tmp_path, "requirements.txt", UNKNOWN_PIN)
    code, report = scan_json(capsys, path, "--fail-on", "critical")
    assert code == 1 and [f["severity"] for f in report["findings"]] == ["unknown"]
    assert report["findings"][0]["fails_gate"] is True and report["failed"] is True
    assert scan(path, "--fail-on", "critical", "--unknown-severity", "ignore") == 0
    assert scan(path, "--unknown-severity", "ignore") == 0
    # Ignoring unknown severity does not pass a scored finding at the threshold.
    both = write(tmp_path, "both/requirements.txt", UNKNOWN_PIN + CRITICAL_PIN)
    assert scan(both, "--fail-on", "high", "--unknown-severity", "ignore") == 1


def test_ignore_vuln_matches_the_id_or_any_alias(tmp_path, advisories, capsys):
    path = write(tmp_path, "requirements.txt", UNKNOWN_PIN + CRITICAL_PIN)
    assert scan(path, "--ignore-vuln", "PYSEC-2021-142") == 1  # the critical one is left
    for pyyaml_id in ("PYSEC-2021-142", "CVE-2020-14343", "ghsa-8q59-q68h-6hv4"):
        code, report = scan_json(capsys, path, "--ignore-vuln", pyyaml_id,
                                 "--ignore-vuln", "CVE-2024-90001")
        assert code == 0, pyyaml_id
        assert report["findings"] == []
        assert sorted(i["advisory"] for i in report["ignored"]) == [
            "GHSA-2c7v-qcjp-4mg2", "PYSEC-2021-142"]


@pytest.mark.parametrize("args, message", [
    (["{tmp}/missing.txt"], "no such file or folder"),
    (["-r", "{tmp}/missing.txt"], "no such file or folder"),
    ([], "give a PATH"),
    (["{tmp}/requirements.txt", "--format", "xml"], "invalid choice: 'xml'"),
    (["{tmp}/requirements.txt", "--fail-on", "severe"], "invalid choice: 'severe'"),
    (["{tmp}/requirements.txt", "--unknown-severity", "maybe"], "invalid choice"),
    (["{tmp}/requirements.txt", "--no-such-option"], "unrecognized arguments"),
    (["{tmp}/requirements.txt", "--output", "{tmp}/no/such/dir/out.json"], "cannot write"),
])
def test_usage_errors_exit_2(tmp_path, advisories, args, message):
    write(tmp_path, "requirements.txt", UNKNOWN_PIN)
    with pytest.raises(CommandError, match=message) as info:
        call_command("scan", *[a.format(tmp=tmp_path) for a in args])
    assert info.value.returncode == 2


@pytest.mark.parametrize("name, content, message", [
    ("requirements.txt", b"PyYAML==5.3.1\n\xff\xfe garbage\n", "not UTF-8 text"),
    ("bom.json", b"{not json", "invalid JSON"),
    ("poetry.lock", b"[[package]\nname = ", "invalid TOML"),
    ("README.md", b"# not a manifest\n", "not a recognised dependency manifest"),
])
def test_a_named_file_that_cannot_be_read_exits_2(tmp_path, advisories, name, content, message):
    """Choice: a file named on the command line that gives nothing to scan is an input error
    (2), never a clean pass; its findings would otherwise be silently missed."""
    with pytest.raises(CommandError, match=message) as info:
        call_command("scan", write(tmp_path, name, content))
    assert info.value.returncode == 2


def test_unreadable_lines_are_listed_and_the_rest_scanned(tmp_path, advisories, capsys):
    """A readable file with lines that are no requirement: each line is a warning on stderr
    (and in the JSON ``errors``), the rest is scanned and decides the exit code."""
    path = write(tmp_path, "requirements.txt", "this is not a requirement !!\n" + UNKNOWN_PIN)
    code, report = scan_json(capsys, path)
    assert code == 1 and [f["advisory"] for f in report["findings"]] == ["PYSEC-2021-142"]
    assert [(e["manifest"], e["line"]) for e in report["errors"]] == [(path, 1)]
    scan(path)
    assert f"warning: {path}:1:" in capsys.readouterr().err


def test_a_folder_without_manifests_or_an_empty_advisory_table_exits_2(tmp_path, db):
    (tmp_path / "empty").mkdir()
    path = write(tmp_path, "requirements.txt", UNKNOWN_PIN)
    with pytest.raises(CommandError, match="no advisories imported") as info:
        call_command("scan", path)
    assert info.value.returncode == 2
    advisories_import(sources=[str(DEMO_ADVISORIES / "pyyaml")])
    with pytest.raises(CommandError, match="no dependency manifests found") as info:
        call_command("scan", str(tmp_path / "empty"))
    assert info.value.returncode == 2


# endregion
# region what is scanned


def test_folders_are_discovered_files_parsed_by_name_and_r_by_force(tmp_path, advisories,
                                                                    capsys, monkeypatch):
    project = tmp_path / "proj"
    write(project, "requirements/base.txt", UNKNOWN_PIN)
    write(project, "requirements/dev.txt", "-r base.txt\n" + MEDIUM_PIN)
    write(project, "sub/requirements.txt", CRITICAL_PIN)
    write(project, "deps.in", CRITICAL_PIN)  # -r reads it whatever its name
    monkeypatch.chdir(project)
    code, report = scan_json(capsys, "requirements/")
    assert code == 1
    # A folder named requirements: its files count through its name, base.txt once.
    assert set(report["manifests"]) == {"requirements/base.txt", "requirements/dev.txt"}
    assert sorted((f["manifest"], f["line"], f["advisory"]) for f in report["findings"]) == [
        ("requirements/base.txt", 1, "PYSEC-2021-142"),
        ("requirements/dev.txt", 2, "PYSEC-2099-1")]
    code, report = scan_json(capsys, ".", "-r", "deps.in")
    assert {f["manifest"] for f in report["findings"]} == {
        "requirements/base.txt", "requirements/dev.txt", "sub/requirements.txt", "deps.in"}
    assert report["dependencies"] == 4 and report["pinned"] == 4


def test_findings_carry_the_advisory_and_the_possible_match_reason(tmp_path, advisories,
                                                                   capsys):
    path = write(tmp_path, "requirements.txt", CRITICAL_PIN + POSSIBLE_PIN + "requests>=2\n")
    code, report = scan_json(capsys, path)
    assert code == 1
    by_id = {f["advisory"]: f for f in report["findings"]}
    critical = by_id["GHSA-2c7v-qcjp-4mg2"]
    assert {k: critical[k] for k in ("package", "version", "ecosystem", "manifest", "line",
                                     "aliases", "severity", "cvss_score", "fixed_in",
                                     "match_reason", "direct")} == {
        "package": "Example.Web_Framework", "version": "2.4.0", "ecosystem": "PyPI",
        "manifest": path, "line": 1, "aliases": ["CVE-2024-90001"], "severity": "critical",
        "cvss_score": 9.8, "fixed_in": ["2.4.1", "3.0.2"], "match_reason": "",
        "direct": True}
    assert critical["summary"] and critical["cvss_vector"].startswith("CVSS:3.1/")
    assert critical["priority"] == 10  # as an APV: 9.8 + 1 direct + 0.5 fix, clamped
    possible = by_id["PYSEC-2099-2"]
    assert possible["severity"] == "unknown"
    assert possible["match_reason"].startswith("possibly affected:")
    assert report["dependencies"] == 3 and report["pinned"] == 2
    scan(path)
    assert "PYSEC-2099-2 (possibly)" in capsys.readouterr().out


# endregion
# region formats


def test_sarif_has_the_required_structure(tmp_path, advisories, capsys, monkeypatch):
    path = write(tmp_path, "requirements.txt", UNKNOWN_PIN + CRITICAL_PIN)
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert scan("requirements.txt", "--format", "sarif") == 1
    sarif = json.loads(capsys.readouterr().out)
    assert sarif["version"] == "2.1.0" and len(sarif["runs"]) == 1
    driver = sarif["runs"][0]["tool"]["driver"]
    assert driver["name"] == "immune"
    assert {r["id"] for r in driver["rules"]} == {"PYSEC-2021-142", "GHSA-2c7v-qcjp-4mg2"}
    results = sarif["runs"][0]["results"]
    assert len(results) == 2
    for result in results:
        assert result["ruleId"] in {r["id"] for r in driver["rules"]}
        assert result["message"]["text"]
        location = result["locations"][0]["physicalLocation"]
        assert location["artifactLocation"]["uri"] == "requirements.txt"
        assert location["region"]["startLine"] in (1, 2)
        assert "apv" not in result["properties"]
    assert scan(path, "--format", "sarif") == 1  # an absolute path becomes a file URI
    uri = json.loads(capsys.readouterr().out)["runs"][0]["results"][0]["locations"][0][
        "physicalLocation"]["artifactLocation"]["uri"]
    assert uri.startswith("file:///") and uri.endswith("/requirements.txt")


def test_cyclonedx_is_a_valid_bom_with_every_pinned_component(tmp_path, advisories, capsys):
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    path = write(tmp_path, "requirements.txt",
                 UNKNOWN_PIN + CRITICAL_PIN + "Django==5.2.19\nrequests>=2\n")
    capsys.readouterr()
    assert scan(path, "--format", "cyclonedx") == 1
    text = capsys.readouterr().out
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    bom = json.loads(text)
    assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"] == "1.6"
    assert sorted(c["purl"] for c in bom["components"]) == [
        "pkg:pypi/django@5.2.19", "pkg:pypi/example-web-framework@2.4.0",
        "pkg:pypi/pyyaml@5.3.1"]
    vulns = {v["id"]: v for v in bom["vulnerabilities"]}
    assert set(vulns) == {"PYSEC-2021-142", "GHSA-2c7v-qcjp-4mg2"}
    assert vulns["PYSEC-2021-142"]["affects"] == [{
        "ref": "pkg:pypi/pyyaml@5.3.1",
        "versions": [{"version": "5.3.1", "status": "affected"}]}]
    assert vulns["GHSA-2c7v-qcjp-4mg2"]["ratings"][0]["severity"] == "critical"


def test_output_file_holds_the_report_and_stdout_stays_empty(tmp_path, advisories, capsys):
    path = write(tmp_path, "requirements.txt", CLEAN_PINS)
    out = tmp_path / "report.json"
    capsys.readouterr()
    assert scan(path, "--format", "json", "--output", str(out)) == 0
    assert capsys.readouterr().out == ""
    report = json.loads(out.read_text())
    assert report["findings"] == [] and report["failed"] is False and report["pinned"] == 3


@pytest.mark.django_db(transaction=True)
def test_the_real_process_exits_1_on_findings_and_2_on_a_bad_option(tmp_path):
    """The exit codes a CI runner sees: through manage.py, argparse and run_from_argv."""
    advisories_import(sources=[str(DEMO_ADVISORIES / "pyyaml")])
    path = write(tmp_path, "requirements.txt", UNKNOWN_PIN)
    db = connection.settings_dict
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PYTEST")},
           "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
           if connection.vendor == "postgresql" else os.environ.get("DATABASE_URL", "")}
    if connection.vendor != "postgresql":
        pytest.skip("a second process only sees the test database on PostgreSQL")

    def run(*args):
        return subprocess.run([sys.executable, "manage.py", "scan", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)

    found = run(path, "--format", "json")
    assert found.returncode == 1, found.stderr
    assert json.loads(found.stdout)["findings"][0]["advisory"] == "PYSEC-2021-142"
    bad = run(path, "--format", "xml")
    assert bad.returncode == 2 and "invalid choice: 'xml'" in bad.stderr


# endregion
# region scan_project


def test_scan_project_exit_codes(tmp_path, advisories, capsys):
    repo = make_repo(tmp_path / "svc", {"requirements.txt": MEDIUM_PIN})
    project_add(name="svc", path=str(repo))
    with pytest.raises(CommandError, match=r"1 open finding\(s\) at or above any") as info:
        call_command("scan_project", "svc")
    assert info.value.returncode == 1
    assert "PYSEC-2099-1" in capsys.readouterr().out  # the report is written first
    call_command("scan_project", "svc", "--fail-on", "high")  # below the threshold: 0
    with pytest.raises(CommandError) as info:
        call_command("scan_project", "svc", "--fail-on", "medium")
    assert info.value.returncode == 1
    call_command("scan_project", "svc", "--ignore-vuln", "CVE-2099-1")
    for args in (["nope"], [], ["svc", "--fail-on", "severe"]):
        with pytest.raises(CommandError) as info:
            call_command("scan_project", *args)
        assert info.value.returncode == 2, args
    clean = make_repo(tmp_path / "clean", {"requirements.txt": "medpkg==1.1\n"})
    project_add(name="clean", path=str(clean))
    call_command("scan_project", "clean")


def test_scan_project_unknown_severity_fails_unless_ignored(tmp_path, advisories):
    repo = make_repo(tmp_path / "svc", {"requirements.txt": UNKNOWN_PIN})
    project_add(name="svc", path=str(repo))
    with pytest.raises(CommandError) as info:
        call_command("scan_project", "svc", "--fail-on", "critical")
    assert info.value.returncode == 1
    call_command("scan_project", "svc", "--fail-on", "critical", "--unknown-severity", "ignore")


# endregion



def test_scan_project_gate_ignores_findings_a_reviewer_settled(tmp_path, advisories, capsys):
    """A risk accepted or a false positive is reported but does not fail scan_project."""
    from apps.reviews.models import APV

    repo = make_repo(tmp_path / "svc", {"requirements.txt": MEDIUM_PIN})
    project = project_add(name="svc", path=str(repo))
    with pytest.raises(CommandError) as info:
        call_command("scan_project", "svc")
    assert info.value.returncode == 1
    capsys.readouterr()
    APV.objects.filter(project=project).update(status="risk_accepted")
    call_command("scan_project", "svc")  # exit 0
    assert "PYSEC-2099-1" in capsys.readouterr().out  # still reported
