"""parse_osv / load_document: record shapes, scores and every refusal reason."""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from apps.advisories.osv import AdvisoryParseError, load_document, parse_osv
from apps.advisories.osv.matching import is_affected
from apps.advisories.osv.parser import severity_for_score

DATA = Path(__file__).parent / "data"


def load(name: str) -> dict[str, Any]:
    path = DATA / name
    return load_document(path.read_bytes(), path=str(path))


def parse(name: str):
    return parse_osv(load(name), path=name)


def minimal(**extra: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": "TEST-1",
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": "example"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}],
            }
        ],
    }
    record.update(extra)
    return record


def with_events(events: list[dict[str, Any]], range_type: str = "ECOSYSTEM", **package):
    record = minimal()
    record["affected"][0]["ranges"] = [{"type": range_type, "events": events}]
    record["affected"][0]["package"].update(package)
    return record


def reason_of(data: Any) -> str:
    with pytest.raises(AdvisoryParseError) as info:
        parse_osv(data, path="rec.json")
    assert info.value.path == "rec.json"
    assert str(info.value) == f"rec.json: {info.value.reason}"
    return info.value.reason


# --- good shapes ---------------------------------------------------------------------------


def test_ghsa_record_with_cvss_v3() -> None:
    adv = parse("ghsa-cvss3.json")
    assert adv.id == "GHSA-2c7v-qcjp-4mg2"
    assert adv.aliases == ("CVE-2024-90001",)
    assert adv.summary.startswith("Example.Web_Framework")
    assert adv.published == datetime(2024, 2, 28, 9, 30, 21, tzinfo=UTC)
    assert adv.modified == datetime(2024, 3, 5, 18, 21, 47, tzinfo=UTC)
    assert adv.withdrawn is None and not adv.is_withdrawn
    (vector,) = adv.severity_vectors
    assert vector.type == "CVSS_V3"
    assert vector.vector == "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
    assert vector.base_score == 9.8
    assert adv.cvss_score == 9.8
    assert adv.severity == "critical"
    # CWE-94 kept, "cwe-1336" normalised, the NVD placeholder dropped.
    assert adv.cwe_ids == ("CWE-94", "CWE-1336")
    assert [ref["type"] for ref in adv.references] == ["ADVISORY", "PACKAGE"]
    (affected,) = adv.affected
    assert affected.ecosystem == "PyPI"
    assert affected.name == "Example.Web_Framework"
    assert affected.normalised_name == "example-web-framework"  # PEP 503
    assert affected.purl == ""  # GHSA records often carry no purl
    assert affected.versions == ()
    assert [r.events for r in affected.ranges] == [
        (("introduced", "0"), ("fixed", "2.4.1")),
        (("introduced", "3.0.0a1"), ("fixed", "3.0.2")),
    ]
    assert affected.fixed_versions == ("2.4.1", "3.0.2")


def test_ghsa_record_with_cvss_v4() -> None:
    adv = parse("ghsa-cvss4.json")
    (vector,) = adv.severity_vectors
    assert vector.type == "CVSS_V4"
    assert vector.base_score == 5.3
    assert adv.cvss_score == 5.3
    assert adv.severity == "medium"
    assert adv.cwe_ids == ("CWE-79",)
    # Nanosecond fractions are cut to microseconds, the zone stays UTC.
    assert adv.modified == datetime(2025, 1, 14, 16, 2, 11, 123456, tzinfo=UTC)
    assert adv.affected[0].ranges[0].events == (("introduced", "1.2.0"), ("last_affected", "1.5.3"))
    assert adv.affected[0].fixed_versions == ()


def test_pysec_record() -> None:
    adv = parse("pysec.json")
    assert adv.id == "PYSEC-2023-9001"
    assert adv.aliases == ("CVE-2023-90003", "GHSA-jq5p-wvg2-vx4r")
    assert adv.summary == ""
    assert adv.severity_vectors == ()
    assert adv.cvss_score is None
    assert adv.severity == "unknown"
    assert adv.cwe_ids == ()
    (affected,) = adv.affected
    assert affected.purl == "pkg:pypi/example-archive"
    assert affected.normalised_name == "example-archive"
    assert [r.type for r in affected.ranges] == ["GIT", "ECOSYSTEM"]
    assert affected.ranges[0].repo == "https://github.com/example/archive"
    assert affected.versions == ("1.0", "1.1.0", "1.2.0", "1.9.0", "1.9.1rc1")
    # The GIT range's fixed commit is not a version.
    assert affected.fixed_versions == ("1.10.0",)


def test_npm_record() -> None:
    adv = parse("npm-semver.json")
    (affected,) = adv.affected
    assert affected.ecosystem == "npm"
    assert affected.normalised_name == "example-merge"
    assert [r.type for r in affected.ranges] == ["SEMVER", "ECOSYSTEM"]
    # No CVSS vector: GHSA's label decides.
    assert adv.cvss_score is None
    assert adv.severity == "high"


def test_content_hash_is_sha256_of_canonical_json() -> None:
    data = load("pysec.json")
    adv = parse_osv(data)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    assert adv.content_hash == hashlib.sha256(canonical.encode()).hexdigest()
    reordered = dict(reversed(list(data.items())))
    assert parse_osv(reordered).content_hash == adv.content_hash
    changed = copy.deepcopy(data)
    changed["details"] += "!"
    assert parse_osv(changed).content_hash != adv.content_hash
    assert adv.raw == data


def test_yaml_and_json_forms_agree() -> None:
    data = load("pysec.json")
    as_yaml = yaml.safe_dump(data, sort_keys=False)
    for key in ("published", "modified"):  # unquoted, as the PyPA files write them
        as_yaml = as_yaml.replace(f"{key}: '{data[key]}'", f"{key}: {data[key]}")
    assert "published: 2023-05-30T15:15:00Z" in as_yaml
    reloaded = load_document(as_yaml, path="rec.yaml")
    assert reloaded["published"] == "2023-05-30T15:15:00Z"  # kept as text, not a datetime
    assert parse_osv(reloaded).content_hash == parse_osv(data).content_hash


@pytest.mark.parametrize(
    ("severity", "expected_score", "expected_level"),
    [
        ([{"type": "CVSS_V2", "score": "AV:N/AC:L/Au:N/C:P/I:P/A:P"}], 7.5, "high"),
        ([{"type": "CVSS_V2", "score": "AV:N/AC:L/Au:N/C:C/I:C/A:C"}], 10.0, "critical"),
        (
            [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N"}],
            6.1,
            "medium",
        ),
        (
            [{"type": "CVSS_V3", "score": "CVSS:3.0/AV:L/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N"}],
            1.8,
            "low",
        ),
        (
            [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N"}],
            0.0,
            "none",
        ),
    ],
)
def test_cvss_scores_and_bands(severity, expected_score, expected_level) -> None:
    adv = parse_osv(minimal(severity=severity))
    assert adv.cvss_score == expected_score
    assert adv.severity == expected_level


def test_newest_cvss_version_gives_score_highest_gives_severity() -> None:
    adv = parse_osv(
        minimal(
            severity=[
                {"type": "CVSS_V2", "score": "AV:N/AC:L/Au:N/C:C/I:C/A:C"},  # 10.0
                {"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N"},  # 6.5
                {"type": "CVSS_V3", "score": "CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"},  # 9.8
                {"type": "Ubuntu", "score": "high"},
            ]
        )
    )
    assert [v.base_score for v in adv.severity_vectors] == [10.0, 6.5, 9.8, None]
    assert adv.cvss_score == 6.5  # v3.1 beats v3.0 and v2
    assert adv.severity == "critical"  # from the highest computed score
    v4 = {
        "type": "CVSS_V4",
        "score": "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
    }
    assert parse_osv(minimal(severity=[*adv.raw["severity"], v4])).cvss_score == 9.3


def test_severity_falls_back_to_ghsa_label_then_unknown() -> None:
    for label, level in [("CRITICAL", "critical"), ("MODERATE", "medium"), ("LOW", "low")]:
        record = minimal(database_specific={"severity": label})
        assert parse_osv(record).severity == level
    assert parse_osv(minimal(database_specific={"severity": "WHATEVER"})).severity == "unknown"
    ubuntu_only = minimal(severity=[{"type": "Ubuntu", "score": "medium"}])
    assert parse_osv(ubuntu_only).severity == "unknown"


def test_severity_bands_edges() -> None:
    assert [severity_for_score(s) for s in (0.0, 0.1, 3.9, 4.0, 6.9, 7.0, 8.9, 9.0, 10.0)] == [
        "none",
        "low",
        "low",
        "medium",
        "medium",
        "high",
        "high",
        "critical",
        "critical",
    ]


def test_names_and_ecosystems() -> None:
    record = minimal()
    record["affected"] = [
        {"package": {"ecosystem": "PyPI", "name": "Zope.Interface__X"}, "versions": ["1.0"]},
        {"package": {"ecosystem": "npm", "name": "@Scope/Left_Pad"}, "versions": ["1.0.0"]},
        {"package": {"ecosystem": "Debian:11", "name": "Python3.9"}, "versions": ["3.9.2-1"]},
        {"ranges": [{"type": "GIT", "repo": "https://x", "events": [{"introduced": "0"}]}]},
    ]
    names = [(a.ecosystem, a.normalised_name) for a in parse_osv(record).affected]
    assert names == [
        ("PyPI", "zope-interface-x"),
        ("npm", "@scope/left_pad"),
        ("Debian:11", "Python3.9"),
        ("", ""),
    ]


def test_timestamps_and_withdrawn() -> None:
    adv = parse_osv(
        minimal(
            published="2021-03-04t05:06:07z",
            modified="2021-03-04T07:06:07+02:00",
            withdrawn="2022-01-01T00:00:00Z",
        )
    )
    assert adv.published == adv.modified == datetime(2021, 3, 4, 5, 6, 7, tzinfo=UTC)
    assert adv.published.tzinfo is UTC
    assert adv.is_withdrawn
    assert "invalid RFC 3339" in reason_of(minimal(modified="yesterday"))


def test_legacy_release_names_in_versions_are_kept_for_exact_match() -> None:
    # PyPI still serves pre-PEP 440 releases; the explicit list is the ecosystem's strings.
    record = minimal()
    record["affected"][0]["versions"] = ["0.7.1.fix1", "1.0"]
    adv = parse_osv(record)
    assert adv.affected[0].versions == ("0.7.1.fix1", "1.0")
    assert is_affected(adv.affected[0], "0.7.1.fix1")


# --- refusals ------------------------------------------------------------------------------


def test_data_file_refusals() -> None:
    with pytest.raises(AdvisoryParseError) as info:
        load("malformed.yaml")
    assert info.value.reason.startswith("invalid YAML:")
    assert "line" in info.value.reason
    expected = {
        "missing-id.json": "missing or empty 'id'",
        "unknown-range-type.json": (
            "affected[0].ranges[0]: unknown range type 'CALVER' (OSV allows ECOSYSTEM, SEMVER, GIT)"
        ),
        "invalid-version.yaml": (
            "affected[0].ranges[0].events[1]: invalid PEP 440 version '1.2 final!'"
        ),
    }
    for name, reason in expected.items():
        with pytest.raises(AdvisoryParseError) as info:
            parse(name)
        assert info.value.path == name
        assert info.value.reason == reason
        assert str(info.value) == f"{name}: {reason}"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (["not", "a", "mapping"], "record is not a mapping (got list)"),
        ({"id": ""}, "missing or empty 'id'"),
        ({"id": 42}, "missing or empty 'id'"),
        (with_events([]), "affected[0].ranges[0]: range has no events"),
        (with_events([{"fixed": "1.0"}]), "affected[0].ranges[0]: range has no 'introduced' event"),
        (
            with_events([{"introduced": "0"}, {"fixd": "1.0"}]),
            "affected[0].ranges[0].events[1]: unknown event key 'fixd' "
            "(OSV allows introduced, fixed, last_affected, limit)",
        ),
        (
            with_events([{"introduced": "0", "fixed": "1.0"}]),
            "affected[0].ranges[0].events[0]: an event needs exactly one key, got 2",
        ),
        (
            with_events([{"introduced": "0"}, {"fixed": "1.x"}], "SEMVER", ecosystem="npm"),
            "affected[0].ranges[0].events[1]: invalid SemVer version '1.x'",
        ),
        (
            minimal(severity=[{"type": "CVSS_V3", "score": "CVSS:3.1/AV:X/AC:L"}]),
            "severity[0]: malformed CVSS_V3 vector 'CVSS:3.1/AV:X/AC:L'",
        ),
        (
            minimal(severity=[{"type": "CVSS_V4", "score": "CVSS:3.1/AV:N"}]),
            "severity[0]: malformed CVSS_V4 vector",
        ),
        (minimal(affected="nope"), "affected: must be a list, got str"),
    ],
)
def test_bad_records(data: Any, reason: str) -> None:
    assert reason_of(data).startswith(reason)


def test_semver_range_accepts_leading_v_and_zero() -> None:
    record = with_events([{"introduced": "0"}, {"fixed": "v1.2.3"}], "SEMVER", ecosystem="npm")
    assert parse_osv(record).affected[0].ranges[0].events[1] == ("fixed", "v1.2.3")


def test_versions_must_be_strings() -> None:
    record = minimal()
    record["affected"][0]["versions"] = ["1.0", 1.1]
    assert reason_of(record) == "affected[0].versions[1]: must be a string, got float 1.1"
    # Explicit versions are opaque strings of the ecosystem, for PyPI as for others.
    record["affected"][0]["versions"] = ["1.0", "not/a/version"]
    assert parse_osv(record).affected[0].versions == ("1.0", "not/a/version")
    record["affected"][0]["package"]["ecosystem"] = "Go"
    assert parse_osv(record).affected[0].versions == ("1.0", "not/a/version")


def test_load_document_formats() -> None:
    assert load_document(b'\xef\xbb\xbf{"id": "X"}', path="a.json") == {"id": "X"}
    assert load_document("id: X\n", path="a.yml") == {"id": "X"}
    assert load_document('[{"id": "X"}]', path="no-extension") == [{"id": "X"}]
    assert load_document("id: X", path="no-extension") == {"id": "X"}
    with pytest.raises(AdvisoryParseError, match=r"^a\.json: invalid JSON: "):
        load_document("{", path="a.json")
    with pytest.raises(AdvisoryParseError, match="not UTF-8"):
        load_document(b"\xff\xfe\x00", path="a.json")
