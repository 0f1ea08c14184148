"""Features read from real inputs: the demo service's own effective and ineffective
patches, advisory CWEs and PEP 440 versions."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings

from apps.ml.features import FEATURES, cwe_family, diff_features, row_features, version_bump
from tests.wargaming.pocrun import ADVISORY_DB

PATCHES = Path(settings.BASE_DIR) / "apps" / "wargaming" / "demo_service" / "patches"


def _diff(name: str) -> dict[str, int]:
    return diff_features((PATCHES / f"{name}.diff").read_text())


def test_parameterised_query_and_removed_string_formatting_are_seen():
    good, bad = _diff("cwe-89-effective"), _diff("cwe-89-ineffective")
    assert good["change_parameterised_query"] == 1 and good["change_removed_calls"] == 1
    assert bad["change_parameterised_query"] == 0 and bad["change_denylist"] == 1
    assert bad["change_validation"] == 1  # it does reject input, just not enough of it


@pytest.mark.parametrize("cwe", ["22", "78", "79", "601", "611", "918"])
def test_ineffective_demo_patches_are_denylists_and_effective_ones_are_not(cwe):
    assert _diff(f"cwe-{cwe}-ineffective")["change_denylist"] == 1
    assert _diff(f"cwe-{cwe}-effective")["change_denylist"] == 0


def test_encoding_canonicalisation_and_argument_lists():
    assert _diff("cwe-79-effective")["change_encoding"] == 1
    assert _diff("cwe-79-ineffective")["change_encoding"] == 0
    assert _diff("cwe-22-effective")["change_allowlist"] == 1  # realpath + commonpath
    assert _diff("cwe-78-effective")["change_allowlist"] == 1  # argv list, no shell
    assert _diff("cwe-78-effective")["change_removed_calls"] == 1  # shell=True is gone
    counts = _diff("cwe-78-effective")
    assert (counts["diff_files"], counts["diff_added"], counts["diff_removed"]) == (1, 1, 2)


def test_version_bump():
    assert version_bump("3.2", "3.2.25") == "patch"
    assert version_bump("1.24.1", "1.26.18") == "minor"
    assert version_bump("0.15.2", "2.3.8") == "major"
    assert version_bump("2.0.0", "2.0.0rc1") == "prerelease"
    assert version_bump("2.0", "1.9") == "downgrade"
    assert version_bump("not a version", "1.0") == "unknown"


def test_cwe_family():
    assert cwe_family(["CWE-89"]) == "injection"
    assert cwe_family(["CWE-20", "CWE-22"]) == "path"  # the specific one wins
    assert cwe_family(["CWE-99999"]) == "other"
    assert cwe_family([]) == "unknown"


def test_every_feature_is_documented_in_docs_ml():
    text = (Path(settings.BASE_DIR) / "docs" / "ml.md").read_text()
    missing = [name for name in FEATURES if f"`{name}`" not in text]
    assert not missing, f"docs/ml.md does not document {missing}"


def _import_pypa(*paths: str) -> None:
    from apps.advisories.services import advisories_import

    files = [ADVISORY_DB / path for path in paths]
    if not all(f.is_file() for f in files):
        pytest.skip(f"no PyPA advisory data at {ADVISORY_DB}")
    report = advisories_import(sources=[str(f) for f in files], announce=False)
    assert not report.failed, report.failures


def _upgrade(package: str, old: str, new: str, *ids: str) -> dict:
    return {"package": package, "vulnerable_version": old, "candidate_version": new,
            "strategy": "dependency_upgrade", "advisory_ids": list(ids)}


@pytest.mark.django_db
def test_where_the_target_stands_against_the_advisory_ranges():
    """The real PyPA ranges of urllib3's CVE-2023-43804: fixed in 1.26.17 and, on the 2.0
    line (introduced 2.0.0), in 2.0.6."""
    _import_pypa("urllib3/PYSEC-2023-192.yaml", "jinja2/PYSEC-2019-217.yaml")
    cve = "CVE-2023-43804"
    expected = {"1.26.17": ("yes", "at"), "1.26.18": ("yes", "after_patch"),
                "2.0.4": ("no", "before_patch"), "2.0.6": ("yes", "at"),
                "2.1.0": ("yes", "after_minor"), "3.0.0": ("yes", "after_major")}
    for target, (leaves, distance) in expected.items():
        features = row_features(_upgrade("urllib3", "1.26.16", target, cve))
        assert (features["target_leaves_affected"], features["fix_distance"]) == (
            leaves, distance), target
        assert features["cwe_family"] != "unknown" or features["severity"]
    # Still vulnerable, a minor release short of the fix; and an upgrade from far below.
    short = row_features(_upgrade("jinja2", "2.8", "2.9.6", "PYSEC-2019-217"))
    assert (short["target_leaves_affected"], short["fix_distance"],
            short["version_bump"]) == ("no", "before_minor", "minor")
    # Advisories of another package, or unknown ids, describe nothing: no features.
    assert row_features(_upgrade("jinja2", "2.10", "2.10.1", cve)) is None
    assert row_features(_upgrade("urllib3", "1.26.16", "1.26.17", "GHSA-0000")) is None


@pytest.mark.django_db
def test_a_code_patch_row_has_no_version_position_and_says_whether_it_compiles():
    from apps.advisories.services import advisories_import
    from apps.wargaming.corpus import DEMO_SERVICE

    advisories_import(sources=[str(DEMO_SERVICE / "advisories")], announce=False)
    row = {"package": "immune-demo-service", "vulnerable_version": "1.0.0",
           "candidate_version": "1.0.0+cwe89.effective", "strategy": "code_patch",
           "advisory_ids": ["IMMUNE-DEMO-CWE-89"], "cwe": "CWE-89", "compiles": True,
           "diff": (PATCHES / "cwe-89-effective.diff").read_text()}
    features = row_features(row)
    assert (features["target_leaves_affected"], features["fix_distance"],
            features["version_bump"], features["compiles"]) == ("n/a", "n/a", "none", "yes")
    assert features["cwe_family"] == "injection" and features["change_parameterised_query"]
    assert row_features({**row, "compiles": False})["compiles"] == "no"
    assert row_features({**row, "compiles": None})["compiles"] == "n/a"
