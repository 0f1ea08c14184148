"""Hostile advisory input (issue 13): refused with a reason, never expanded, never contagious.

Each test builds the hostile file the issue describes (or one of its kind) next to valid
records and imports the folder through the real service and database.
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings

from apps.advisories.models import Advisory, AffectedPackage
from apps.advisories.osv import AdvisoryParseError, load_document, parse_osv
from apps.advisories.services import _write_batch, advisories_import
from apps.advisories.tasks import advisories_sync

#: The issue's kind of file: ~400 bytes of nested aliases that expand to 9**9 strings.
BILLION_LAUGHS = "id: PYSEC-0000-LOL\n" + "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}' if prev else 'lol'] * 9)}]\n"
    for prev, name in zip(["", *"abcdefgh"], "abcdefghi", strict=True)
)


def record(osv_id: str, **extra) -> dict:
    data = {
        "id": osv_id, "modified": "2024-01-01T00:00:00Z", "summary": f"{osv_id} flaw",
        "affected": [{"package": {"ecosystem": "PyPI", "name": "example"},
                      "ranges": [{"type": "ECOSYSTEM",
                                  "events": [{"introduced": "0"}, {"fixed": "1.2"}]}]}],
    }
    data.update(extra)
    return data


def write_json(folder: Path, name: str, data) -> Path:
    path = folder / name
    path.write_text(json.dumps(data))
    return path


def reasons(report) -> dict[str, str]:
    return {Path(f.path).name: f.reason for f in report.failures}


# --- YAML aliases and anchors --------------------------------------------------------------


def test_billion_laughs_is_small_and_refused_before_expansion():
    assert len(BILLION_LAUGHS) < 600
    with pytest.raises(AdvisoryParseError) as info:
        load_document(BILLION_LAUGHS, path="lol.yaml")
    assert info.value.reason.startswith("YAML aliases/anchors are not allowed (line 2")


def test_an_anchor_alone_is_refused_too():
    with pytest.raises(AdvisoryParseError, match="YAML aliases/anchors are not allowed"):
        load_document("id: &x PYSEC-1\nsummary: fine\n", path="a.yaml")


@pytest.mark.django_db
def test_billion_laughs_fails_alone_and_the_folder_imports(tmp_path):
    (tmp_path / "lol.yaml").write_text(BILLION_LAUGHS)
    write_json(tmp_path, "good-1.json", record("PYSEC-0000-1"))
    write_json(tmp_path, "good-2.json", record("PYSEC-0000-2"))
    report = advisories_import(sources=[str(tmp_path)])
    assert (report.created, report.failed) == (2, 1)
    assert reasons(report)["lol.yaml"].startswith("YAML aliases/anchors are not allowed")
    assert not Advisory.objects.filter(osv_id="PYSEC-0000-LOL").exists()


# --- nesting, node count and size caps ------------------------------------------------------


@pytest.mark.django_db
def test_deep_nesting_and_yaml_node_floods_are_refused_with_their_cap(tmp_path):
    (tmp_path / "deep.json").write_text("[" * 200_000 + "]" * 200_000)
    (tmp_path / "deep.yaml").write_text("id: X\nx: " + "[" * 5_000 + "]" * 5_000 + "\n")
    deep_record = record("PYSEC-0000-3")
    inner: dict = {}
    deep_record["database_specific"] = inner
    for _ in range(40):
        inner["x"] = inner = {}
    write_json(tmp_path, "deep-record.json", deep_record)
    with override_settings(ADVISORY_MAX_YAML_NODES=1_000):
        (tmp_path / "flood.yaml").write_text("id: Y\nx:\n" + "- []\n" * 2_000)
        write_json(tmp_path, "good.json", record("PYSEC-0000-1"))
        report = advisories_import(sources=[str(tmp_path)])
    found = reasons(report)
    assert found["deep.json"] == "nested deeper than 32 levels"
    assert found["deep.yaml"] == "nested deeper than 32 levels"
    assert found["deep-record.json"] == "nested deeper than 32 levels"
    assert found["flood.yaml"] == ("YAML document has more than 1000 nodes "
                                   "(ADVISORY_MAX_YAML_NODES)")
    assert report.created == 1


@pytest.mark.django_db
@override_settings(ADVISORY_MAX_FILE_BYTES=4096, ADVISORY_MAX_RECORD_BYTES=2048,
                   ADVISORY_MAX_RECORDS_PER_FILE=3)
def test_size_and_count_caps_refuse_with_the_setting_named(tmp_path):
    big = tmp_path / "big.json"
    with big.open("wb") as handle:  # sparse: refused from its size, never read
        handle.truncate(10 * 1024 * 1024 * 1024)
    write_json(tmp_path, "long-record.json", record("PYSEC-0000-4", details="x" * 3000))
    write_json(tmp_path, "list.json", [record(f"PYSEC-0000-{i}") for i in range(10, 14)])
    write_json(tmp_path, "good.json", record("PYSEC-0000-1"))
    archive = tmp_path / "feed.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("bomb.json", " " * (50 * 1024 * 1024))  # 50 MB inflated, ~50 kB stored
        zf.writestr("ok.json", json.dumps(record("PYSEC-0000-5")))
    report = advisories_import(sources=[str(tmp_path), str(archive)])
    found = reasons(report)
    assert found["big.json"] == ("file is 10737418240 bytes, above the cap of 4096 bytes "
                                 "(ADVISORY_MAX_FILE_BYTES)")
    assert found["long-record.json"].startswith("record is ")
    assert found["long-record.json"].endswith("above the cap of 2048 bytes "
                                              "(ADVISORY_MAX_RECORD_BYTES)")
    assert found["list.json"] == ("document holds 4 records, above the cap of 3 "
                                  "(ADVISORY_MAX_RECORDS_PER_FILE)")
    assert found["feed.zip!bomb.json"].startswith("file is 52428800 bytes, above the cap")
    assert set(Advisory.objects.values_list("osv_id", flat=True)) == {
        "PYSEC-0000-1", "PYSEC-0000-5"}


# --- one bad record never fails its neighbours -------------------------------------------


@pytest.mark.django_db
def test_a_nul_byte_fails_its_own_record_only(tmp_path):
    """The issue: "one record with a NUL byte failed every valid record in its folder (3 of 3
    rejected)". Now the other two import and the third says why."""
    write_json(tmp_path, "a.json", record("PYSEC-0000-1"))
    write_json(tmp_path, "b.json", record("PYSEC-0000-2", summary="nul \u0000 here"))
    write_json(tmp_path, "c.json", record("PYSEC-0000-3"))
    (tmp_path / "d.yaml").write_text('id: PYSEC-0000-4\naffected:\n- package: {ecosystem: PyPI, '
                                     'name: "ex\\0ample"}\n')
    report = advisories_import(sources=[str(tmp_path)])
    assert (report.created, report.failed) == (2, 2)
    found = reasons(report)
    assert found["b.json"] == "summary: holds a NUL character (\\u0000), which is not stored"
    assert found["d.yaml"] == ("affected[0].package.name: holds a NUL character (\\u0000), "
                               "which is not stored")
    assert set(Advisory.objects.values_list("osv_id", flat=True)) == {
        "PYSEC-0000-1", "PYSEC-0000-3"}


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"id": "X", "database_specific": {"score": float("nan")}},
         "database_specific.score: holds nan, which is not a JSON number"),
        ({"id": "X", "database_specific": {1: "a"}},
         "database_specific: has a key of type int (1); JSON keys are strings"),
        ({"id": "X", "database_specific": {"blob": b"\x00"}},
         "database_specific.blob: holds a value of type bytes, which is not JSON data"),
    ],
)
def test_data_no_database_stores_as_is_is_refused(data, reason):
    with pytest.raises(AdvisoryParseError) as info:
        parse_osv(data, path="r")
    assert info.value.reason == reason


@pytest.mark.django_db
def test_an_over_long_value_fails_its_own_record_on_every_database(tmp_path):
    write_json(tmp_path, "a.json", record("PYSEC-0000-1"))
    long_name = record("PYSEC-0000-2")
    long_name["affected"][0]["package"]["name"] = "x" * 400
    write_json(tmp_path, "b.json", long_name)
    write_json(tmp_path, "c.json", record("PYSEC-0000-3", aliases=["CVE-" + "9" * 300]))
    write_json(tmp_path, "d.json", record("PYSEC-0000-4"))
    report = advisories_import(sources=[str(tmp_path)])
    assert (report.created, report.failed) == (2, 2)
    found = reasons(report)
    assert found["b.json"].startswith(
        "affectedpackage.name is 400 characters, above the 300 the database stores")
    assert found["c.json"].startswith(
        "advisoryalias.alias is 304 characters, above the 200 the database stores")
    assert AffectedPackage.objects.count() == 2


@pytest.mark.postgres
@pytest.mark.django_db
def test_what_the_database_refuses_rolls_back_that_record_alone(tmp_path):
    """Past every parse-time check (built by hand here), PostgreSQL refuses NUL in text: the
    record's savepoint rolls back, its neighbours in the same batch are stored."""
    good = [parse_osv(record(f"PYSEC-0000-{i}"), path=f"{i}.json") for i in (1, 3)]
    bad = dataclasses.replace(parse_osv(record("PYSEC-0000-2"), path="2.json"),
                              summary="nul \x00 here")
    done = _write_batch([("1.json", good[0]), ("2.json", bad), ("3.json", good[1])],
                        source="t")
    assert (done.created, [f.path for f in done.failures]) == (2, ["2.json"])
    assert done.failures[0].reason.startswith("the database refused the record:")
    assert "0x00" in done.failures[0].reason or "NUL" in done.failures[0].reason
    assert set(Advisory.objects.values_list("osv_id", flat=True)) == {
        "PYSEC-0000-1", "PYSEC-0000-3"}
    assert AffectedPackage.objects.count() == 2
    assert connection.vendor == "postgresql"


# --- the hourly sync -----------------------------------------------------------------------


@pytest.mark.django_db
def test_hourly_sync_reports_hostile_records_and_imports_the_rest(tmp_path):
    (tmp_path / "lol.yaml").write_text(BILLION_LAUGHS)
    write_json(tmp_path, "nul.json", record("PYSEC-0000-2", details="\u0000"))
    write_json(tmp_path, "good.json", record("PYSEC-0000-1"))
    missing = str(tmp_path / "gone.zip")
    with override_settings(ADVISORY_SOURCES=[str(tmp_path), missing]):
        results = advisories_sync()
    feed = results[str(tmp_path)]
    assert (feed["records"], feed["created"], feed["failed"]) == (3, 1, 2)
    assert {Path(f["path"]).name for f in feed["failures"]} == {"lol.yaml", "nul.json"}
    assert results[missing]["unreadable_sources"] == [
        {"path": missing, "reason": "no such file or directory"}]


# --- the command's exit codes with hostile input ---------------------------------------------


@pytest.mark.django_db
def test_command_exits_zero_with_hostile_records_listed(tmp_path, capsys):
    (tmp_path / "lol.yaml").write_text(BILLION_LAUGHS)
    write_json(tmp_path, "good.json", record("PYSEC-0000-1"))
    call_command("import_advisories", str(tmp_path), "--json")
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["records"], summary["created"], summary["failed"]) == (2, 1, 1)
    assert summary["failures"][0]["reason"].startswith("YAML aliases/anchors are not allowed")
