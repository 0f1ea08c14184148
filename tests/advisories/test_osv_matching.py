"""OSV § Evaluation semantics, the AdvisoryIndex, and a check against the whole PyPA database."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from apps.advisories.osv import (
    AdvisoryIndex,
    AdvisoryParseError,
    AffectedPackage,
    ParsedAdvisory,
    Range,
    RecordError,
    fixed_versions_for,
    in_ranges,
    is_affected,
    iter_source,
    load_document,
    normalise_name,
    parse_osv,
)
from apps.advisories.osv import matching as matching_module
from apps.advisories.osv.matching import parse_pep440
from tests.helpers import pypa_root

DATA = Path(__file__).parent / "data"


def package(
    *ranges: Range, versions: tuple[str, ...] = (), ecosystem: str = "PyPI", name: str = "pkg"
) -> AffectedPackage:
    return AffectedPackage(
        ecosystem=ecosystem,
        name=name,
        normalised_name=normalise_name(ecosystem, name),
        purl="",
        ranges=ranges,
        versions=versions,
    )


def rng(*events: tuple[str, str], type: str = "ECOSYSTEM") -> Range:  # noqa: A002 - OSV name
    return Range(type=type, events=events)


def affected_among(affected: AffectedPackage, candidates: str) -> str:
    """The affected ones of space-separated candidate versions, in the same order."""
    return " ".join(v for v in candidates.split() if is_affected(affected, v))


# --- range semantics -----------------------------------------------------------------------


def test_introduced_zero_is_below_everything() -> None:
    aff = package(rng(("introduced", "0")))
    every = "0.0.0.dev0 0 0.1 1.0a1 99.0 2024.1.1.post3"
    assert affected_among(aff, every) == every


def test_fixed_is_exclusive_and_pre_releases_sort_pep440() -> None:
    aff = package(rng(("introduced", "1.0"), ("fixed", "2.0")))
    candidates = "0.9 1.0 1.0.0 1.5 1.9.9 2.0rc1 2.0 2.0.0 2.0.1 1.0a1"
    assert affected_among(aff, candidates) == "1.0 1.0.0 1.5 1.9.9 2.0rc1"


def test_last_affected_is_inclusive() -> None:
    aff = package(rng(("introduced", "1.2.0"), ("last_affected", "1.5.3")))
    assert affected_among(aff, "1.1 1.2.0 1.5.3 1.5.3.0 1.5.3.post1 1.5.4") == "1.2.0 1.5.3 1.5.3.0"


def test_limit_caps_the_range() -> None:
    aff = package(rng(("introduced", "1.0"), ("limit", "1.4")))
    assert affected_among(aff, "0.5 1.0 1.3.9 1.4 5.0") == "1.0 1.3.9"
    star = package(rng(("introduced", "1.0"), ("limit", "*")))
    assert affected_among(star, "0.5 1.0 9999") == "1.0 9999"
    two_limits = package(rng(("introduced", "0"), ("limit", "1.0"), ("limit", "3.0")))
    # BeforeLimits: below at least one limit.
    assert affected_among(two_limits, "0.5 2.0 3.0") == "0.5 2.0"


def test_multiple_pairs_in_one_range() -> None:
    aff = package(
        rng(
            ("introduced", "1.0.0"), ("fixed", "1.0.2"), ("introduced", "3.0.0"), ("fixed", "3.2.5")
        )
    )
    candidates = "0.9 1.0.0 1.0.1 1.0.2 2.0 3.0.0 3.2.4 3.2.5 4.0"
    assert affected_among(aff, candidates) == "1.0.0 1.0.1 3.0.0 3.2.4"


def test_unsorted_events_are_sorted_first() -> None:
    aff = package(
        rng(
            ("fixed", "3.2.5"), ("introduced", "3.0.0"), ("fixed", "1.0.2"), ("introduced", "1.0.0")
        )
    )
    assert affected_among(aff, "0.9 1.0.1 1.0.2 3.1 3.2.5") == "1.0.1 3.1"


def test_any_range_matches() -> None:
    aff = package(rng(("introduced", "0"), ("fixed", "1.0")), rng(("introduced", "2.0")))
    assert affected_among(aff, "0.5 1.0 1.5 2.0 3.0") == "0.5 2.0 3.0"


def test_explicit_versions_use_pep440_equality() -> None:
    aff = package(versions=("1.0", "2.0.0rc1", "0.7.1.fix1"))
    candidates = "1 1.0 1.0.0 1.0.1 2.0rc1 2.0.0-rc.1 0.7.1.fix1"
    assert affected_among(aff, candidates) == "1 1.0 1.0.0 2.0rc1 2.0.0-rc.1 0.7.1.fix1"


def test_git_ranges_never_decide_versions() -> None:
    commit = "5a0a4b0c6f6f1c8d2a3b4c5d6e7f8091a2b3c4d5"
    aff = package(rng(("introduced", "0"), ("fixed", commit), type="GIT"))
    assert affected_among(aff, f"0.1 1.0 {commit}") == ""


def test_unparsable_version_under_test_is_not_affected() -> None:
    aff = package(rng(("introduced", "0")))
    for bad in ("", "not a version", "1.0+", "latest"):
        assert is_affected(aff, bad) is False
    assert is_affected(aff, None) is False  # type: ignore[arg-type]


def test_semver_ranges_and_npm() -> None:
    semver_range = rng(("introduced", "0"), ("fixed", "1.4.2"), type="SEMVER")
    npm_range = rng(("introduced", "2.0.0-beta.1"), ("last_affected", "2.1.0"))
    aff = package(semver_range, npm_range, ecosystem="npm", name="Example-Merge")
    candidates = "0.0.1 1.4.1 v1.4.1 1.4.2-rc.1 1.4.2 1.4 2.0.0-alpha 2.0.0-beta.1 2.1.0 2.1.1"
    assert affected_among(aff, candidates) == "0.0.1 1.4.1 v1.4.1 1.4.2-rc.1 2.0.0-beta.1 2.1.0"
    # SEMVER ranges use SemVer precedence whatever the ecosystem; build metadata is ignored.
    pypi = package(rng(("introduced", "1.0.0"), ("fixed", "2.0.0"), type="SEMVER"))
    assert affected_among(pypi, "1.0.0+build.7 1.9.9 2.0.0") == "1.0.0+build.7 1.9.9"


def test_other_ecosystems_use_versions_only() -> None:
    aff = package(
        rng(("introduced", "0"), ("fixed", "1.2-3")), versions=("1.0-1",), ecosystem="Debian:11"
    )
    assert affected_among(aff, "1.0-1 1.1-1 1.2-3") == "1.0-1"


def test_range_with_unorderable_event_is_skipped() -> None:
    aff = package(rng(("introduced", "0"), ("fixed", "2019-09-12 build")), versions=("1.0",))
    assert affected_among(aff, "0.5 1.0 3.0") == "1.0"


def test_fixed_versions_for_sorts_by_ecosystem_order() -> None:
    aff = package(
        rng(("introduced", "3.0"), ("fixed", "3.10.1")),
        rng(("introduced", "0"), ("fixed", "3.9.2")),
        rng(("introduced", "0"), ("fixed", "deadbeef"), type="GIT"),
    )
    assert aff.fixed_versions == ("3.10.1", "3.9.2")
    assert fixed_versions_for(aff) == ("3.9.2", "3.10.1")


# --- the index -----------------------------------------------------------------------------


def advisory(
    advisory_id: str,
    *affected: AffectedPackage,
    withdrawn: datetime | None = None,
    modified: datetime | None = None,
) -> ParsedAdvisory:
    return ParsedAdvisory(
        id=advisory_id,
        aliases=(),
        summary="",
        details="",
        published=None,
        modified=modified,
        withdrawn=withdrawn,
        severity_vectors=(),
        cvss_score=None,
        severity="unknown",
        cwe_ids=(),
        references=(),
        affected=affected,
        raw={},
        content_hash="",
    )


def test_index_matches_by_normalised_name() -> None:
    records = [
        parse_osv(load_document((DATA / name).read_bytes(), path=name), path=name)
        for name in ("ghsa-cvss3.json", "npm-semver.json")
    ]
    index = AdvisoryIndex(records)
    assert len(index) == 2
    hits = index.matches("PyPI", "example_web.FRAMEWORK", "2.4.0")
    assert [(adv.id, aff.name) for adv, aff in hits] == [
        ("GHSA-2c7v-qcjp-4mg2", "Example.Web_Framework")
    ]
    assert index.matches("pypi", "Example-Web-Framework", "3.0.0rc1")
    assert index.matches("PyPI", "example-web-framework", "2.4.1") == []
    assert index.matches("npm", "example-merge", "1.0.0")[0][0].id == "GHSA-6g5v-9x2m-r7pw"
    assert index.matches("npm", "example-web-framework", "1.0.0") == []
    assert index.matches("PyPI", "unrelated", "1.0") == []


def test_index_skips_withdrawn_and_keeps_newest_copy() -> None:
    pkg = package(rng(("introduced", "0")))
    old = advisory("A-1", pkg, modified=datetime(2020, 1, 1, tzinfo=UTC))
    new = advisory(
        "A-1", package(rng(("introduced", "5.0"))), modified=datetime(2021, 1, 1, tzinfo=UTC)
    )
    gone = advisory("W-1", pkg, withdrawn=datetime(2022, 1, 1, tzinfo=UTC))
    index = AdvisoryIndex([old, gone, new, old])
    assert len(index) == 1 and "W-1" not in index
    assert index.get("A-1") is new
    assert index.matches("PyPI", "pkg", "1.0") == []
    assert [adv.id for adv, _ in index.matches("PyPI", "pkg", "5.0")] == ["A-1"]


def test_index_wildcard_package_name() -> None:
    # OSV 1.9: name "*" covers every package of the ecosystem.
    everything = advisory(
        "EOL-1", package(rng(("introduced", "0")), ecosystem="Debian:9", name="*")
    )
    index = AdvisoryIndex([everything])
    assert [adv.id for adv, _ in index.matches("Debian:9", "openssl", "1.1")] == []  # versions only
    listed = advisory("EOL-2", package(versions=("1.1",), ecosystem="Debian:9", name="*"))
    index.add(listed)
    assert [adv.id for adv, _ in index.matches("Debian:9", "openssl", "1.1")] == ["EOL-2"]


def test_index_lookup_does_not_scan_other_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    many = [
        advisory(f"A-{n}", package(rng(("introduced", "0")), name=f"pkg-{n}")) for n in range(2000)
    ]
    index = AdvisoryIndex(many)
    calls: list[str] = []
    real = matching_module.is_affected

    def counting(affected: AffectedPackage, version: str) -> bool:
        calls.append(affected.name)
        return real(affected, version)

    monkeypatch.setattr(matching_module, "is_affected", counting)
    assert [adv.id for adv, _ in index.matches("PyPI", "PKG_1999", "1.0")] == ["A-1999"]
    assert calls == ["pkg-1999"]


# --- the whole PyPA advisory database --------------------------------------------------------


# Files parse_osv refuses in strict mode, with the reason. Legacy (pre-PEP 440) strings in
# `versions` are accepted and matched exactly; only range events must be orderable.
PYPA_PARSE_FAILURES: dict[str, str] = {
    # Range events must be orderable versions, or the range cannot be evaluated; these two
    # records carry a non-PEP 440 string as an event, so the data is at fault.
    "binderhub/PYSEC-2021-371.yaml": (
        "affected[0].ranges[1].events[1]: invalid PEP 440 version '0.2.0-n653'"
    ),
    "steam/PYSEC-2019-125.yaml": (
        "affected[0].ranges[0].events[1]: invalid PEP 440 version '2019-09-12'"
    ),
}

# Advisories whose `versions` list holds pre-PEP 440 release names (e.g. ipython 0.7.1.fix1,
# paramiko 0.1-bulbasaur) or scraping accidents (a repr, a timestamp, "trunk").
PYPA_ADVISORIES_WITH_LEGACY_VERSIONS = 28

# Advisories whose explicit `versions` list names a version that their own ranges exclude
# (OSV § Evaluation applied to the ECOSYSTEM ranges alone). The data disagrees with itself.
PYPA_RANGE_DISAGREEMENTS: dict[str, str] = {
    "PYSEC-2021-114": (
        "wagtail: one events array merges overlapping intervals (introduced 0/fixed 2.11.6 and "
        "introduced 2.11/fixed 2.11.7); sorted, 2.11.6 is fixed, yet versions lists 2.11.6"
    ),
    "PYSEC-2023-177": (
        "gevent: range says fixed 23.9.0, but versions lists 23.9.0 and 23.9.0.post1"
    ),
    "PYSEC-2023-61": (
        "django: ranges start at the finals (introduced 3.2 / 4.2) while versions also lists "
        "the pre-releases 3.2a1, 3.2b1, 3.2rc1, 4.2a1, 4.2b1, 4.2rc1, which sort before them"
    ),
    "PYSEC-2024-1": "gratient: malware record with only versions ['0.5'] and no range at all",
}


@pytest.fixture(scope="module")
def pypa() -> tuple[Path, list[ParsedAdvisory], dict[str, str]]:
    root = pypa_root()
    parsed: list[ParsedAdvisory] = []
    failures: dict[str, str] = {}
    for item in iter_source(str(root)):
        relative = Path(item.path).relative_to(root).as_posix()
        if isinstance(item, RecordError):
            failures[relative] = item.reason
            continue
        try:
            parsed.append(parse_osv(item.data, path=item.path))
        except AdvisoryParseError as exc:
            failures[relative] = exc.reason
    return root, parsed, failures


def test_pypa_every_file_parses_or_is_allow_listed(pypa) -> None:
    root, parsed, failures = pypa
    assert failures == PYPA_PARSE_FAILURES
    assert len(parsed) + len(failures) == sum(1 for _ in root.rglob("*.yaml"))
    assert len({adv.id for adv in parsed}) == len(parsed)
    for relative, reason in PYPA_PARSE_FAILURES.items():
        # Only the version strictness refuses them; the importer (strict=False) keeps them
        # with the range marked unparseable (issue 13).
        data = load_document((root / relative).read_bytes(), path=relative)
        lenient = parse_osv(data, path=relative, strict=False)
        ((where, event),) = [r.split(": ", 1) for r in lenient.unparseable_ranges]
        assert reason.startswith(where)
        assert event.endswith(f"{reason.rsplit(' ', 1)[-1]} is not a PEP 440 version")


def test_pypa_listed_versions_agree_with_ranges(pypa) -> None:
    _root, parsed, _failures = pypa
    disagreeing: dict[str, list[str]] = {}
    legacy: set[str] = set()
    checked = 0
    for adv in parsed:
        for aff in adv.affected:
            for version in aff.versions:
                assert is_affected(aff, version)
                if parse_pep440(version) is None:
                    # A pre-PEP 440 release name has no place in a PEP 440 order: it is
                    # matched exactly through `versions`, never through a range.
                    legacy.add(adv.id)
                    continue
                checked += 1
                if not in_ranges(aff, version):
                    disagreeing.setdefault(adv.id, []).append(version)
    assert checked > 0
    assert set(disagreeing) == set(PYPA_RANGE_DISAGREEMENTS), disagreeing
    assert len(legacy) == PYPA_ADVISORIES_WITH_LEGACY_VERSIONS, sorted(legacy)


def test_pypa_index_answers_real_questions(pypa) -> None:
    _root, parsed, _failures = pypa
    index = AdvisoryIndex(parsed)
    assert 0 < len(index) <= len(parsed)
    django_ids = {adv.id for adv, _ in index.matches("PyPI", "Django", "4.2")}
    assert "PYSEC-2023-61" in django_ids  # fixed in 4.2.1
    assert "PYSEC-2023-61" not in {adv.id for adv, _ in index.matches("PyPI", "django", "4.2.1")}
