"""Importing OSV records into the database: counts, idempotency, bad input, sources."""

from __future__ import annotations

import json
import shutil
import threading
import zipfile
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.advisories.models import Advisory, AdvisoryAlias, AffectedPackage
from apps.advisories.services import advisories_import
from tests.factories import TEST_ADVISORIES, pypa_root

GOOD = ["ghsa-cvss3.json", "ghsa-cvss4.json", "npm-semver.json", "pysec.json"]
# Imported too, its range marked unparseable ("1.2 final!" is no PEP 440 version).
UNPARSEABLE = "invalid-version.yaml"
STORED = len(GOOD) + 1
BAD = {
    "malformed.yaml": "invalid YAML",
    "missing-id.json": "missing or empty 'id'",
    "unknown-range-type.json": "unknown range type 'CALVER'",
}


def writes(queries) -> list[str]:
    return [q["sql"] for q in queries
            if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))]


@pytest.mark.django_db
def test_folder_import_stores_good_records_and_reports_each_bad_one():
    report = advisories_import(sources=[str(TEST_ADVISORIES)], source_name="fixtures")
    assert (report.created, report.updated, report.unchanged) == (STORED, 0, 0)
    assert report.failed == len(BAD)
    assert report.records == STORED + len(BAD)
    (note,) = report.unparseable_ranges
    assert note["id"] == "PYSEC-2024-9003" and note["path"].endswith(UNPARSEABLE)
    assert "'1.2 final!' is not a PEP 440 version" in note["reason"]
    by_file = {f.path.rsplit("/", 1)[-1]: f.reason for f in report.failures}
    for name, reason in BAD.items():
        assert reason in by_file[name], by_file[name]
    ghsa = Advisory.objects.get(osv_id="GHSA-2c7v-qcjp-4mg2")
    assert ghsa.cvss_score == 9.8 and ghsa.severity == "critical"
    assert ghsa.cvss_vector == "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
    assert "CWE-94" in ghsa.cwe_ids
    assert ghsa.raw["database_specific"]["github_reviewed"] is True  # whole record kept
    assert ghsa.source == "fixtures"
    assert AdvisoryAlias.objects.filter(alias="CVE-2024-90001", advisory=ghsa).exists()
    affected = AffectedPackage.objects.get(advisory=ghsa)
    assert affected.normalised_name == "example-web-framework"
    assert affected.fixed_versions == ["2.4.1", "3.0.2"]


@pytest.mark.django_db
def test_reimport_of_the_same_source_writes_nothing():
    advisories_import(sources=[str(TEST_ADVISORIES)])
    with CaptureQueriesContext(connection) as ctx:
        again = advisories_import(sources=[str(TEST_ADVISORIES)])
    assert (again.created, again.updated, again.unchanged) == (0, 0, STORED)
    assert writes(ctx.captured_queries) == []


@pytest.mark.django_db
def test_changed_record_is_updated_and_its_children_replaced(tmp_path):
    source = tmp_path / "feed"
    shutil.copytree(TEST_ADVISORIES, source)
    advisories_import(sources=[str(source)])
    record = json.loads((source / "pysec.json").read_text())
    record["modified"] = "2099-01-01T00:00:00Z"
    record["aliases"] = ["CVE-2099-0001"]
    (source / "pysec.json").write_text(json.dumps(record))
    report = advisories_import(sources=[str(source)])
    assert (report.created, report.updated, report.unchanged) == (0, 1, STORED - 1)
    advisory = Advisory.objects.get(osv_id=record["id"])
    assert advisory.aliases == ["CVE-2099-0001"]
    assert list(advisory.alias_rows.values_list("alias", flat=True)) == ["CVE-2099-0001"]
    assert advisory.affected_packages.count() == len(record["affected"])


@pytest.mark.django_db
def test_bad_update_keeps_what_was_stored(tmp_path):
    source = tmp_path / "feed"
    shutil.copytree(TEST_ADVISORIES, source)
    advisories_import(sources=[str(source)])
    before = Advisory.objects.get(osv_id="GHSA-2c7v-qcjp-4mg2").content_hash
    (source / "ghsa-cvss3.json").write_text('{"id": "GHSA-2c7v-qcjp-4mg2", "affected": [{')
    report = advisories_import(sources=[str(source)])
    assert report.failed == len(BAD) + 1
    assert Advisory.objects.get(osv_id="GHSA-2c7v-qcjp-4mg2").content_hash == before


@pytest.mark.django_db
def test_zip_and_url_sources(tmp_path):
    archive = tmp_path / "all.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name in GOOD:
            zf.write(TEST_ADVISORIES / name, arcname=name)
    report = advisories_import(sources=[str(archive)])
    assert report.created == len(GOOD) and report.failed == 0
    Advisory.objects.all().delete()

    handler = partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a, **k: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/all.zip"
        report = advisories_import(sources=[url])
        missing = advisories_import(sources=[url.replace("all.zip", "nope.zip")])
    finally:
        server.shutdown()
    assert report.created == len(GOOD)
    assert missing.failed == 1 and "404" in missing.failures[0].reason


@pytest.mark.django_db
def test_command_lists_failures_in_its_json_line_and_exits_zero(capsys):
    """Every record processed: exit 0, failures listed (issue 13)."""
    call_command("import_advisories", str(TEST_ADVISORIES), "--json", "--source", "t")
    last = capsys.readouterr().out.strip().splitlines()[-1]
    summary = json.loads(last)
    assert {k: summary[k] for k in ("records", "created", "updated", "unchanged", "withdrawn",
                                    "failed")} \
        == {"records": STORED + len(BAD), "created": STORED, "updated": 0, "unchanged": 0,
            "withdrawn": 0, "failed": len(BAD)}
    assert {f["path"].rsplit("/", 1)[-1] for f in summary["failures"]} == set(BAD)
    assert summary["unreadable_sources"] == []
    assert [n["id"] for n in summary["unparseable_ranges"]] == ["PYSEC-2024-9003"]


@pytest.mark.django_db
def test_command_strict_exits_one_on_any_failure(capsys):
    with pytest.raises(CommandError) as info:
        call_command("import_advisories", str(TEST_ADVISORIES), "--strict")
    assert info.value.returncode == 1
    assert "3 record(s) failed to import (--strict)" in str(info.value)
    captured = capsys.readouterr()
    assert "FAILED " in captured.err and "failed 3" in captured.out
    # The records that could be imported were imported all the same.
    assert Advisory.objects.count() == STORED


@pytest.mark.django_db
def test_command_exits_one_when_a_source_cannot_be_read(tmp_path, capsys):
    for name in GOOD:
        shutil.copy(TEST_ADVISORIES / name, tmp_path / name)
    missing = tmp_path / "nope"
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"not a zip")
    with pytest.raises(CommandError) as info:
        call_command("import_advisories", str(tmp_path), str(missing), str(broken), "--json")
    assert info.value.returncode == 1
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["created"] == len(GOOD)  # the readable source was imported
    assert [f["path"] for f in summary["unreadable_sources"]] == [str(missing), str(broken)]


@pytest.mark.django_db
def test_command_exits_zero_on_clean_input(tmp_path, capsys):
    for name in GOOD:
        shutil.copy(TEST_ADVISORIES / name, tmp_path / name)
    call_command("import_advisories", str(tmp_path))
    assert "created 4, updated 0, unchanged 0, withdrawn 0, failed 0" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.django_db
def test_whole_pypa_database_twice_second_run_writes_nothing():
    root = pypa_root()
    first = advisories_import(sources=[str(root)], source_name="pypa")
    files = sum(1 for _ in root.rglob("*.yaml"))
    # Every record imported (2,661 in the snapshot of 2026-12): none fails.
    assert first.failures == []
    assert first.created == first.records == files
    withdrawn = sum(1 for path in root.rglob("*.yaml")
                    if any(line.startswith("withdrawn:") for line in path.read_text().splitlines()))
    assert first.withdrawn == withdrawn > 0
    assert Advisory.objects.filter(withdrawn__isnull=False).count() == withdrawn
    # Two records carry a range event that is no PEP 440 version: stored, range marked.
    assert {n["id"] for n in first.unparseable_ranges} == {"PYSEC-2021-371", "PYSEC-2019-125"}
    assert set(AffectedPackage.objects.exclude(unparseable_reason="")
               .values_list("advisory__osv_id", flat=True)) == {"PYSEC-2021-371", "PYSEC-2019-125"}
    stored = Advisory.objects.count()
    assert stored == first.created
    assert AffectedPackage.objects.count() >= stored
    with CaptureQueriesContext(connection) as ctx:
        second = advisories_import(sources=[str(root)], source_name="pypa")
    assert (second.created, second.updated, second.unchanged, second.failed) == \
        (0, 0, first.created, 0)
    assert writes(ctx.captured_queries) == []
    assert Advisory.objects.count() == stored
