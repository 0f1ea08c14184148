"""Scanning real git repositories raises one APV per exposure, by the OSV rules."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.core.management import CommandError, call_command
from django.db import connection

from apps.advisories.osv import AdvisoryIndex, iter_source, parse_osv
from apps.advisories.services import advisories_import
from apps.core.errors import ApplicationError
from apps.core.realtime import group_name
from apps.inventory.models import Dependency
from apps.inventory.services import project_add, project_scan
from apps.reviews.models import APV
from tests.factories import commit_files, git, make_repo, pypa_root

DEMO_PINS = "PyYAML==5.3.1\nJinja2==2.10\nurllib3==1.24.1\nDjango==3.2\n"


def osv_record(osv_id, package, introduced, fixed, *, score=None, **extra):
    record = {
        "id": osv_id, "modified": "2024-01-01T00:00:00Z", "aliases": [f"CVE-{osv_id[-4:]}-1"],
        "summary": f"{package} flaw",
        "affected": [{"package": {"ecosystem": "PyPI", "name": package},
                      "ranges": [{"type": "ECOSYSTEM",
                                  "events": [{"introduced": introduced}, {"fixed": fixed}]}]}],
    }
    if score:
        record["severity"] = [{"type": "CVSS_V3", "score": score}]
    record.update(extra)
    return record


CRITICAL = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"


@pytest.fixture
def feed(tmp_path, db):
    """A tiny advisory feed in a folder; returns a function to (re)write and import it."""
    folder = tmp_path / "feed"
    folder.mkdir()

    def write(*records):
        for old in folder.glob("*.json"):
            old.unlink()
        for record in records:
            (folder / f"{record['id']}.json").write_text(json.dumps(record))
        return advisories_import(sources=[str(folder)], source_name="test")

    return write


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path / "service", {
        "requirements.txt": (
            "# pinned\nPyYAML==5.3.1\nrequests>=2\n\n"
            "jinja2 == 2.10 ; python_version >= '3'\nthis is not a requirement\n"
        ),
    })


def test_project_add_checks_the_working_copy(tmp_path, repo, db):
    with pytest.raises(ApplicationError, match="not a git working copy"):
        project_add(name="x", path=str(tmp_path))
    with pytest.raises(ApplicationError, match="branch 'trunk' does not exist"):
        project_add(name="x", path=str(repo), default_branch="trunk")
    project = project_add(name="svc", path=str(repo))
    with pytest.raises(ApplicationError, match="already exists"):
        project_add(name="svc", path=str(repo))
    assert project.default_branch == "main"


def test_scan_raises_apvs_with_lines_priority_and_sla(repo, feed):
    feed(osv_record("PYSEC-2021-0001", "pyyaml", "0", "5.4", score=CRITICAL),
         osv_record("PYSEC-2019-0002", "Jinja2", "0", "2.10.1"),
         osv_record("PYSEC-2020-0003", "jinja2", "2.11", "2.11.3"))  # not affecting 2.10
    project = project_add(name="svc", path=str(repo))
    result = project_scan(project=project)
    assert result.pinned == 2 and result.dependencies == 3  # requests>=2 is unpinned
    assert result.errors and result.errors[0]["line"] == 6  # the broken line, reported
    apvs = {a.advisory.osv_id: a for a in APV.objects.select_related("dependency", "advisory")}
    assert set(apvs) == {"PYSEC-2021-0001", "PYSEC-2019-0002"}
    yaml_apv = apvs["PYSEC-2021-0001"]
    assert re.fullmatch(r"APV-\d{8}-\d{4}", yaml_apv.code)
    assert yaml_apv.dependency.line == 2 and yaml_apv.dependency.manifest_path == "requirements.txt"
    assert (yaml_apv.severity, yaml_apv.cvss_score, yaml_apv.priority) == ("critical", 9.8, 10)
    assert yaml_apv.sla_due_at - yaml_apv.first_seen_at == timedelta(days=7)
    assert yaml_apv.fixed_in == ["5.4"] and yaml_apv.status == "open"
    jinja = apvs["PYSEC-2019-0002"]
    assert (jinja.severity, jinja.priority) == ("unknown", 7)  # 5 (unknown) + 1 direct + 0.5 fix
    assert jinja.sla_due_at - jinja.first_seen_at == timedelta(days=90)


def test_rescan_updates_never_duplicates_and_resolves_what_is_gone(repo, feed):
    feed(osv_record("PYSEC-2021-0001", "pyyaml", "0", "5.4"),
         osv_record("PYSEC-2019-0002", "jinja2", "0", "2.10.1"))
    project = project_add(name="svc", path=str(repo))
    first = project_scan(project=project)
    codes = {a.code for a in first.apvs.created}
    second = project_scan(project=project)
    assert second.apvs.created == [] and len(second.apvs.unchanged) == 2
    assert set(APV.objects.values_list("code", flat=True)) == codes
    commit_files(repo, {"requirements.txt": "PyYAML==5.4\njinja2==2.10\n"}, message="bump")
    third = project_scan(project=project)
    assert [a.advisory.osv_id for a in third.apvs.resolved] == ["PYSEC-2021-0001"]
    resolved = APV.objects.get(advisory__osv_id="PYSEC-2021-0001")
    assert resolved.status == "resolved" and resolved.resolution == "no longer found by a scan"
    assert not Dependency.objects.get(normalised_name="pyyaml", version="5.3.1").present
    assert APV.objects.count() == 2


def test_scan_reads_the_default_branch_not_the_checked_out_files(repo, feed):
    feed(osv_record("PYSEC-2021-0001", "pyyaml", "0", "5.4"))
    project = project_add(name="svc", path=str(repo))
    (repo / "requirements.txt").write_text("PyYAML==5.4\n")  # uncommitted edit
    git(repo, "checkout", "-q", "-b", "feature")
    project_scan(project=project)
    assert APV.objects.filter(advisory__osv_id="PYSEC-2021-0001", status="open").exists()
    assert (repo / "requirements.txt").read_text() == "PyYAML==5.4\n"  # untouched
    assert git(repo, "branch", "--show-current").strip() == "feature"


def test_withdrawn_advisory_stops_matching_and_resolves_its_apvs(repo, feed):
    record = osv_record("PYSEC-2021-0001", "pyyaml", "0", "5.4")
    feed(record)
    project = project_add(name="svc", path=str(repo))
    project_scan(project=project)
    report = feed({**record, "modified": "2024-06-01T00:00:00Z",
                   "withdrawn": "2024-06-01T00:00:00Z"})
    assert (report.updated, report.withdrawn) == (1, 1)
    apv = APV.objects.get()
    assert apv.status == "resolved" and apv.resolution == "advisory withdrawn"
    rescan = project_scan(project=project)
    assert rescan.apvs.created == [] and APV.objects.get().status == "resolved"


@pytest.mark.django_db(transaction=True)
def test_created_apvs_are_pushed_after_commit(repo, tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "a.json").write_text(json.dumps(osv_record("PYSEC-2021-0001", "pyyaml", "0", "5.4")))
    advisories_import(sources=[str(folder)])
    project = project_add(name="svc", path=str(repo))

    async def scenario():
        # One event loop for every layer call (channels-redis binds connections to a loop);
        # the scan runs in a worker thread and its on-commit push comes back to this loop.
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(group_name("apvs"), channel)
        await database_sync_to_async(project_scan)(project=project)
        try:
            return await asyncio.wait_for(layer.receive(channel), timeout=5)
        finally:
            await layer.group_discard(group_name("apvs"), channel)

    message = async_to_sync(scenario)()
    assert message["event"] == "apv.created"
    assert message["data"]["advisory"] == "PYSEC-2021-0001"
    assert message["data"]["apv"] == APV.objects.get().code


def test_scan_command_outputs(repo, feed, capsys):
    feed(osv_record("PYSEC-2021-0001", "pyyaml", "0", "5.4", score=CRITICAL))
    project_add(name="svc", path=str(repo))
    # Any open finding exits 1 (issue 14; tests/inventory/test_scan_command.py has the matrix),
    # after the report is written.
    with pytest.raises(CommandError) as info:
        call_command("scan_project", "svc")
    assert info.value.returncode == 1
    table = capsys.readouterr().out
    assert "PYSEC-2021-0001" in table and "requirements.txt:2" in table
    with pytest.raises(CommandError):
        call_command("scan_project", "svc", "--json")
    document = json.loads(capsys.readouterr().out)
    (finding,) = document["findings"]
    assert {k: finding[k] for k in ("package", "version", "ecosystem", "manifest", "line",
                                     "advisory", "severity", "cvss_score", "fixed_in",
                                     "priority", "status")} == {
        "package": "PyYAML", "version": "5.3.1", "ecosystem": "PyPI",
        "manifest": "requirements.txt", "line": 2, "advisory": "PYSEC-2021-0001",
        "severity": "critical", "cvss_score": 9.8, "fixed_in": ["5.4"], "priority": 10,
        "status": "open"}
    assert finding["aliases"] == ["CVE-0001-1"] and finding["apv"].startswith("APV-")
    with pytest.raises(CommandError) as info:
        call_command("scan_project", "svc", "--fail-on", "high")
    assert info.value.returncode == 1
    with pytest.raises(CommandError, match="no project named") as info:
        call_command("scan_project", "nope")
    assert info.value.returncode == 2


def test_demo_pins_scan_to_what_the_osv_rules_give(tmp_path, db):
    """The acceptance check of the issue, on the real PyPA data: the APVs a scan raises are
    exactly the advisories an independent OSV evaluation of the files finds."""
    root = pypa_root()
    advisories_import(sources=[str(root)], source_name="pypa")
    repo = make_repo(tmp_path / "demo", {"requirements.txt": DEMO_PINS})
    project_scan(project=project_add(name="demo", path=str(repo)))
    index = AdvisoryIndex(
        parse_osv(item.data, path=item.path, strict=False)
        for item in iter_source(str(root)) if hasattr(item, "data")
    )
    expected = {
        (name, adv.id)
        for name, version in (("pyyaml", "5.3.1"), ("jinja2", "2.10"), ("urllib3", "1.24.1"),
                              ("django", "3.2"))
        for adv, _ in index.matches("PyPI", name, version)
    }
    found = set(APV.objects.values_list("dependency__normalised_name", "advisory__osv_id"))
    assert found == expected
    assert ("pyyaml", "PYSEC-2021-142") in found  # CVE-2020-14343, full_load RCE
    assert len(found) > 30


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_scans_never_share_a_code(tmp_path):
    """Four projects scanned at once on PostgreSQL: every APV code is unique."""
    folder = tmp_path / "f"
    folder.mkdir()
    for i in range(5):
        (folder / f"{i}.json").write_text(json.dumps(
            osv_record(f"PYSEC-2021-000{i}", "pyyaml", "0", f"5.{i + 4}")))
    advisories_import(sources=[str(folder)])
    projects = [
        project_add(name=f"p{i}", path=str(make_repo(tmp_path / f"r{i}",
                                                       {"requirements.txt": "PyYAML==5.3.1\n"})))
        for i in range(4)
    ]
    errors = []

    def scan(project):
        try:
            project_scan(project=project)
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=scan, args=(p,)) for p in projects]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    codes = list(APV.objects.values_list("code", flat=True))
    assert len(codes) == 20 and len(set(codes)) == 20


def test_scan_command_writes_sarif_and_cyclonedx_vex(repo, feed, capsys):
    feed(osv_record("PYSEC-2021-0001", "pyyaml", "0", "5.4", score=CRITICAL))
    project_add(name="svc", path=str(repo))
    with pytest.raises(CommandError):  # a finding: exit 1, the report written first
        call_command("scan_project", "svc", "--sarif")
    sarif = json.loads(capsys.readouterr().out)
    (result,) = sarif["runs"][0]["results"]
    assert sarif["version"] == "2.1.0" and result["ruleId"] == "PYSEC-2021-0001"
    assert result["level"] == "error"
    location = result["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"] == "requirements.txt"
    assert location["region"]["startLine"] == 2
    with pytest.raises(CommandError):
        call_command("scan_project", "svc", "--cyclonedx")
    vex = json.loads(capsys.readouterr().out)
    assert vex["bomFormat"] == "CycloneDX"
    assert [c["purl"] for c in vex["components"]] == ["pkg:pypi/pyyaml@5.3.1"]
    assert vex["vulnerabilities"][0]["id"] == "PYSEC-2021-0001"
    assert vex["vulnerabilities"][0]["analysis"]["state"] == "in_triage"
