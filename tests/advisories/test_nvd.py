"""NVD's CVE JSON 2.0 import (issue 18): real syntax, which metric wins, idempotency, hostile
files, and the severity it gives advisories without a CVSS score of their own."""

from __future__ import annotations

import copy
import gzip
import json
from datetime import date

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from apps.advisories.models import Advisory, NvdCve
from apps.advisories.nvd.parser import MAX_DEPTH, _CapExceeded, _NestingScanner
from apps.advisories.nvd.services import nvd_import
from apps.advisories.services import advisories_import
from tests.advisories.nvd_feed import build_feed, v3_metric
from tests.factories import ROOT, pypa_root
from tests.helpers import last_json_line

NVD_DATA = ROOT / "tests" / "advisories" / "nvd_data"
FEED = NVD_DATA / "nvdcve-2.0-fixture.json"
API_PAGE = NVD_DATA / "nvd-api-cves-2.0-page.json"
GHSA_PYYAML = ROOT / "tests" / "advisories" / "evidence_data" / "GHSA-8q59-q68h-6hv4.json"
#: Real PyPA records without a severity of their own, one per CVE of the fixture.
PYPA = {
    "PYSEC-2021-142": "pyyaml/PYSEC-2021-142.yaml",       # CVE-2020-14343
    "PYSEC-2014-13": "requests/PYSEC-2014-13.yaml",       # CVE-2014-1829 (v2 only)
    "PYSEC-2023-62": "flask/PYSEC-2023-62.yaml",          # CVE-2023-30861 (3 sources)
    "PYSEC-2022-43012": "setuptools/PYSEC-2022-43012.yaml",  # CVE-2022-40897 (v4.0)
    "PYSEC-2020-14": "apache-airflow/PYSEC-2020-14.yaml",  # CVE-2020-11978 (KEV)
}

pytestmark = pytest.mark.django_db


def _writes(queries) -> list[str]:
    return [q["sql"] for q in queries.captured_queries
            if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))]


def _osv(tmp_path, osv_id: str, aliases: list[str], **extra) -> str:
    record = {"id": osv_id, "modified": "2026-01-01T00:00:00Z", "aliases": aliases,
              "summary": f"test advisory {osv_id}",
              "affected": [{"package": {"ecosystem": "PyPI", "name": "example"},
                            "ranges": [{"type": "ECOSYSTEM",
                                        "events": [{"introduced": "0"}, {"fixed": "2.0"}]}]}],
              **extra}
    path = tmp_path / f"{osv_id}.json"
    path.write_text(json.dumps(record))
    return str(path)


@pytest.fixture
def pypa(db, tmp_path):
    advisories_import(sources=[str(pypa_root() / path) for path in PYPA.values()],
                      source_name="pypa")
    # Names only the rejected and the received CVE of the fixture.
    advisories_import(sources=[_osv(tmp_path, "TEST-2024-1", ["CVE-2024-0000", "CVE-2025-0000"])])
    assert not Advisory.objects.filter(osv_id__in=PYPA, cvss_score__isnull=False).exists()


def _advisory(osv_id: str) -> tuple:
    a = Advisory.objects.get(osv_id=osv_id)
    return (a.severity, a.cvss_score, a.cvss_vector, a.cvss_source, a.severity_from,
            a.nvd_metric_source, a.nvd_metric_type)


def test_the_feed_fixture_scores_unscored_advisories_and_reimport_writes_nothing(
        pypa, capsys, tmp_path):
    call_command("import_nvd", str(FEED), "--json")
    report = last_json_line(capsys.readouterr().out)
    assert (report["rows"], report["created"], report["failed"], report["rejected"]) == (
        7, 7, 0, 1)
    assert report["sources"][0]["format"] == "NVD_CVE" and report["unreadable"] == ""
    assert report["advisories_updated"] == 5

    # Stored per CVE: every metric with its source and type, CWE, dates, KEV fields.
    flask = NvdCve.objects.get(cve="CVE-2023-30861")
    assert [(m["version"], m["type"], m["source"], m["base_score"]) for m in flask.metrics] == [
        ("4.0", "Secondary", "security-advisories@github.com", 8.2),
        ("3.1", "Secondary", "security-advisories@github.com", 5.9),
        ("3.1", "Primary", "nvd@nist.gov", 7.5)]
    assert flask.cwe_ids == ["CWE-539"] and flask.vuln_status == "Analyzed"
    requests = NvdCve.objects.get(cve="CVE-2014-1829")
    assert requests.metrics == [{"version": "2.0", "vector": "AV:N/AC:L/Au:N/C:P/I:N/A:N",
                                 "base_score": 5.0, "base_severity": "MEDIUM",
                                 "source": "nvd@nist.gov", "type": "Primary"}]
    airflow = NvdCve.objects.get(cve="CVE-2020-11978")
    assert (airflow.kev_date_added, airflow.kev_action_due, airflow.kev_vulnerability_name) == (
        date(2022, 1, 18), date(2022, 7, 18), "Apache Airflow Command Injection")
    assert NvdCve.objects.get(cve="CVE-2020-14343").published.isoformat() == (
        "2021-02-09T21:15:12.857000+00:00")
    received = NvdCve.objects.get(cve="CVE-2025-0000")
    assert (received.vuln_status, received.metrics, received.cwe_ids) == ("Received", [], [])

    # The PyYAML RCE: NVD's Primary CVSS 3.1 (the v2 score beside it is older).
    assert _advisory("PYSEC-2021-142") == (
        "critical", 9.8, "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "nvd",
        "CVE-2020-14343", "nvd@nist.gov", "Primary")
    # Only v2: scored with v2 (banded like v3: 5.0 is medium).
    assert _advisory("PYSEC-2014-13")[:3] == ("medium", 5.0, "AV:N/AC:L/Au:N/C:P/I:N/A:N")
    # Several sources: the Primary 3.1 beats the CNA's Secondary 4.0 (newer, higher).
    assert _advisory("PYSEC-2023-62")[:3] + _advisory("PYSEC-2023-62")[5:] == (
        "high", 7.5, "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N", "nvd@nist.gov",
        "Primary")
    # Secondary only: the newest version, 4.0.
    assert _advisory("PYSEC-2022-43012") == (
        "high", 8.7, "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:N/VI:N/VA:H/SC:N/SI:N/SA:N", "nvd",
        "CVE-2022-40897", "security-advisories@github.com", "Secondary")
    # NVD's cisaExploitAdd lists it in KEV.
    airflow_advisory = Advisory.objects.get(osv_id="PYSEC-2020-14")
    assert airflow_advisory.kev_listed and airflow_advisory.kev_date_added == date(2022, 1, 18)
    # A rejected CVE's leftover metric is never used; a received one has none.
    assert _advisory("TEST-2024-1") == ("unknown", None, "", "", "", "", "")

    with CaptureQueriesContext(connection) as queries:
        again = nvd_import(paths=[FEED])
    assert (again.created, again.updated, again.unchanged, again.advisories_updated) == (
        0, 0, 7, 0)
    assert _writes(queries) == []

    # The same file gzipped, named as NVD names it: the same records, nothing to write.
    gz = tmp_path / "nvdcve-2.0-modified.json.gz"
    gz.write_bytes(gzip.compress(FEED.read_bytes()))
    with CaptureQueriesContext(connection) as queries:
        zipped = nvd_import(paths=[gz])
    assert (zipped.rows, zipped.unchanged, zipped.created, zipped.updated) == (7, 7, 0, 0)
    assert _writes(queries) == []


def test_a_saved_api_response_imports_like_a_feed(db, capsys):
    advisories_import(sources=[str(pypa_root() / "requests" / "PYSEC-2018-28.yaml")])
    call_command("import_nvd", str(API_PAGE))
    out = capsys.readouterr().out
    assert "nvd records 2: created 2, updated 0, unchanged 0" in out
    assert _advisory("PYSEC-2018-28")[:4] == (
        "critical", 9.8, "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "nvd")


def test_own_cvss_always_wins_nvd_beats_a_twin_and_a_stated_severity(db, tmp_path):
    advisories_import(sources=[str(GHSA_PYYAML), str(pypa_root() / PYPA["PYSEC-2021-142"])])
    assert _advisory("PYSEC-2021-142")[4] == "GHSA-8q59-q68h-6hv4"  # carried from its twin
    # A stated severity only (GHSA's database_specific), no vector.
    stated = _osv(tmp_path, "GHSA-test-stated", ["CVE-2014-1829"],
                  database_specific={"severity": "LOW"})
    advisories_import(sources=[stated])
    assert _advisory("GHSA-test-stated")[:2] == ("low", None)

    nvd_import(paths=[FEED])
    # The GHSA record has its own CVSS 3.1: it keeps it.
    assert _advisory("GHSA-8q59-q68h-6hv4")[3:5] == ("", "")
    # Its PYSEC twin has none: NVD's now, not the twin's.
    assert _advisory("PYSEC-2021-142")[3:5] == ("nvd", "CVE-2020-14343")
    assert _advisory("GHSA-test-stated")[:5] == (
        "medium", 5.0, "AV:N/AC:L/Au:N/C:P/I:N/A:N", "nvd", "CVE-2014-1829")

    # NVD rejects both CVEs later (the modified feed): what the advisories had comes back.
    feed = json.loads(FEED.read_text())
    modified = {"vulnerabilities": []}
    for item in feed["vulnerabilities"]:
        if item["cve"]["id"] in ("CVE-2020-14343", "CVE-2014-1829"):
            item["cve"].update(vulnStatus="Rejected", lastModified="2026-11-30T10:00:00.000")
            modified["vulnerabilities"].append(item)
    path = tmp_path / "nvdcve-2.0-modified.json"
    path.write_text(json.dumps(modified))
    report = nvd_import(paths=[path])
    assert (report.updated, report.rejected, report.advisories_updated) == (2, 2, 2)
    assert _advisory("PYSEC-2021-142")[:5] == (
        "critical", 9.8, "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "",
        "GHSA-8q59-q68h-6hv4")
    assert _advisory("GHSA-test-stated")[:5] == ("low", None, "", "", "")

    # An older file (the yearly feed after the modified one) never overwrites newer data.
    with CaptureQueriesContext(connection) as queries:
        older = nvd_import(paths=[FEED])
    assert (older.older, older.unchanged, older.created) == (2, 5, 0)
    assert _writes(queries) == []
    assert NvdCve.objects.get(cve="CVE-2020-14343").vuln_status == "Rejected"


def test_an_advisory_naming_several_cves_takes_the_most_severe(db, tmp_path):
    advisories_import(sources=[_osv(tmp_path, "TEST-2", ["CVE-2014-1829", "CVE-2020-14343"])])
    nvd_import(paths=[FEED])
    assert _advisory("TEST-2")[:5] == (
        "critical", 9.8, "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "nvd", "CVE-2020-14343")


def test_an_advisory_imported_after_nvd_gets_its_score(db):
    nvd_import(paths=[FEED])
    advisories_import(sources=[str(pypa_root() / PYPA["PYSEC-2021-142"])])
    assert _advisory("PYSEC-2021-142")[:4] == (
        "critical", 9.8, "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "nvd")


# --- bad records, bad files ---------------------------------------------------------------
def _record(cve: str) -> dict:
    """One synthetic record in NVD's syntax (tests/advisories/nvd_feed.py)."""
    return build_feed([cve])["vulnerabilities"][0]


def _v31(score=9.8, **data):
    metric = v3_metric("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H")
    metric["cvssData"].update(baseScore=score, **data)
    return metric


BAD_RECORDS = [
    ({"metrics": {"cvssMetricV31": [_v31("9.8")]}},
     "cve.metrics.cvssMetricV31[0].cvssData.baseScore: str, not a number"),
    ({"metrics": {"cvssMetricV31": [_v31(11.0)]}},
     "cve.metrics.cvssMetricV31[0].cvssData.baseScore: 11.0 is not between 0 and 10"),
    ({"metrics": {"cvssMetricV31": [_v31(vectorString="CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/"
                                                      "I:H/A:H")]}},
     "is not a CVSS 3.1 vector"),
    ({"metrics": {"cvssMetricV31": [_v31(vectorString="CVSS:3.1/AV:N/AC:L")]}},
     "malformed CVSS 3.1 vector"),
    ({"metrics": {"cvssMetricV31": [_v31(version="3.0")]}},
     "cve.metrics.cvssMetricV31[0].cvssData.version: '3.0' in a CVSS 3.1 list"),
    ({"metrics": {"cvssMetricV31": [{**_v31(), "type": "Tertiary"}]}},
     "cve.metrics.cvssMetricV31[0].type: 'Tertiary', not Primary or Secondary"),
    ({"metrics": [_v31()]}, "cve.metrics: list, not an object"),
    ({"metrics": {"cvssMetricV31": {"0": _v31()}}}, "cve.metrics.cvssMetricV31: dict, not a list"),
    ({"id": "not-a-cve"}, "cve.id: 'NOT-A-CVE' is not a CVE id"),
    ({"published": "yesterday"}, "cve.published: 'yesterday' is not an ISO 8601 time"),
    ({"vulnStatus": "Analyzed\x00"}, "cve.vulnStatus: holds a NUL character"),
    ({"cisaExploitAdd": "soon"}, "cve.cisaExploitAdd: 'soon' is not a date"),
    ({"weaknesses": "CWE-79"}, "weaknesses: str, not a list"),
    ({"sourceIdentifier": "x" * 300}, "cve.sourceIdentifier: 300 characters, above the 200"),
]


@pytest.mark.parametrize(("changes", "reason"), BAD_RECORDS,
                         ids=[reason.split(":")[0][:40] for _, reason in BAD_RECORDS])
def test_a_bad_record_is_listed_with_its_field_and_the_rest_imported(
        db, tmp_path, capsys, changes, reason):
    bad = _record("CVE-2021-0002")
    bad["cve"].update(changes)
    document = build_feed(["CVE-2021-0001"])
    document["vulnerabilities"].append(bad)
    path = tmp_path / "nvdcve-2.0-2021.json"
    path.write_text(json.dumps(document))
    call_command("import_nvd", str(path), "--json")  # exit 0: the file was read
    report = last_json_line(capsys.readouterr().out)
    assert (report["rows"], report["created"], report["failed"]) == (1, 1, 1)
    failure = report["failures"][0]
    assert failure["path"].startswith("nvdcve-2.0-2021.json:vulnerabilities[1]")
    assert reason in failure["reason"]
    assert list(NvdCve.objects.values_list("cve", flat=True)) == ["CVE-2021-0001"]


def _truncated() -> bytes:
    text = json.dumps(build_feed([f"CVE-2021-{n:04d}" for n in range(1, 2001)]))
    return text[: len(text) * 3 // 4].encode()


HOSTILE = {
    "truncated.json": (_truncated, "invalid JSON"),
    "not-json.json": (lambda: b"hello, NVD", "invalid JSON"),
    "list.json": (lambda: b"[1, 2]", "the document is a list, not an object"),
    "object.json": (lambda: json.dumps({"format": "NVD_CVE", "version": "2.0",
                                        "vulnerabilities": {"cve": {}}}).encode(),
                    "'vulnerabilities' is an object, not a list"),
    "nvdcve-1.1-2021.json": (lambda: json.dumps({
        "CVE_data_type": "CVE", "CVE_data_format": "MITRE", "CVE_data_version": "4.0",
        "CVE_data_numberOfCVEs": "1", "CVE_Items": [{"cve": {}}]}).encode(),
        "NVD's retired JSON 1.1 feed (CVE_Items)"),
    "osv.json": (lambda: json.dumps({"format": "OSV", "vulnerabilities": []}).encode(),
                 "format 'OSV', not NVD_CVE"),
    "version.json": (lambda: json.dumps({"format": "NVD_CVE", "version": "1.1",
                                         "vulnerabilities": []}).encode(),
                     "version '1.1'; import_nvd reads NVD's CVE JSON 2.0"),
    "known_exploited_vulnerabilities.json": (
        lambda: (ROOT / "tests/advisories/evidence_data/known_exploited_vulnerabilities.json"
                 ).read_bytes(),
        "none of its 4 entries could be read as an NVD CVE record; the first: "),
    "all-bad.json": (lambda: json.dumps({"vulnerabilities": [{"cve": {"id": 7}}]}).encode(),
                     "vulnerabilities[0]: cve.id: int, not a string"),
    "broken.json.gz": (lambda: gzip.compress(json.dumps(build_feed(["CVE-2021-0001"])).encode()
                                             )[:-30], "broken gzip data"),
    "deep.json": (lambda: b'{"vulnerabilities": [{"cve": {"id": "CVE-2021-0001", '
                  b'"configurations": ' + b"[" * 1_000_000 + b"]" * 1_000_000 + b"}}]}",
                  f"nested deeper than {MAX_DEPTH} levels"),
    "no-vulnerabilities.json": (lambda: b'{"format": "NVD_CVE", "version": "2.0"}',
                                "no 'vulnerabilities' list"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_file_that_cannot_be_read_whole_stores_nothing_and_exits_1(db, tmp_path, name):
    advisories_import(sources=[str(pypa_root() / PYPA["PYSEC-2021-142"])])
    content, reason = HOSTILE[name]
    path = tmp_path / name
    path.write_bytes(content())
    with pytest.raises(CommandError) as raised:
        call_command("import_nvd", str(path))
    assert raised.value.returncode == 1
    assert str(raised.value).startswith(f"{name}: ") and reason in str(raised.value)
    # Nothing half-done: not the records read before the error, not a severity.
    assert not NvdCve.objects.exists()
    assert _advisory("PYSEC-2021-142")[:4] == ("unknown", None, "", "")


def test_caps_on_a_record_and_on_the_file(db, tmp_path, settings):
    big = _record("CVE-2021-0003")
    big["cve"]["descriptions"][0]["value"] = "x" * 200_000
    document = build_feed(["CVE-2021-0001", "CVE-2021-0002"])
    document["vulnerabilities"].insert(1, big)
    path = tmp_path / "nvdcve-2.0-2021.json"
    path.write_text(json.dumps(document))
    settings.NVD_MAX_RECORD_BYTES = 100_000
    report = nvd_import(paths=[path])
    assert report.unreadable.startswith("nvdcve-2.0-2021.json: vulnerabilities[1] is larger "
                                        "than 100000 bytes (NVD_MAX_RECORD_BYTES)")
    settings.NVD_MAX_RECORD_BYTES = 1_000_000
    settings.NVD_MAX_FILE_BYTES = 150_000
    report = nvd_import(paths=[path])
    assert "the document is larger than 150000 bytes (NVD_MAX_FILE_BYTES)" in report.unreadable
    assert not NvdCve.objects.exists()
    settings.NVD_MAX_FILE_BYTES = 1_000_000
    assert nvd_import(paths=[path]).created == 3


def test_an_unreadable_file_beside_a_good_one_exits_1_and_keeps_the_good_one(
        db, tmp_path, capsys):
    missing = tmp_path / "nvdcve-2.0-2031.json"
    with pytest.raises(CommandError, match="nvdcve-2.0-2031.json: cannot read it"):
        call_command("import_nvd", str(missing), str(FEED))
    assert "nvd records 7: created 7" in capsys.readouterr().out
    assert NvdCve.objects.count() == 7


def test_a_cve_listed_twice_keeps_its_newest_record(db, tmp_path):
    document = build_feed(["CVE-2021-0001"])
    newer = copy.deepcopy(document["vulnerabilities"][0])
    newer["cve"].update(lastModified="2026-11-30T00:00:00.000", vulnStatus="Modified")
    document["vulnerabilities"] = [newer, document["vulnerabilities"][0]]
    path = tmp_path / "pages.json"
    path.write_text(json.dumps(document))
    assert nvd_import(paths=[path]).created == 1
    assert NvdCve.objects.get().vuln_status == "Modified"


# --- the nesting scanner ------------------------------------------------------------------
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='ab[]{}"\\\n\u00e9', max_size=6),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(alphabet='k[]"\\', max_size=4), children, max_size=4),
    max_leaves=30)


def _depth(value) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


@hsettings(max_examples=300, deadline=None)
@given(value=_json_values, cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8))
def test_the_nesting_scanner_agrees_with_json_whatever_the_chunks(value, cuts):
    """Strings holding brackets, quotes and backslashes, split anywhere between chunks."""
    data = json.dumps(value, ensure_ascii=False).encode()
    depth = _depth(value)
    points = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    for limit, fails in ((depth, False), (depth - 1, depth > 0)):
        scanner = _NestingScanner(limit)
        try:
            for start, end in zip(points, points[1:], strict=False):
                scanner.feed(data[start:end])
        except _CapExceeded:
            assert fails
        else:
            assert not fails and scanner.depth == 0 and not scanner.in_string
