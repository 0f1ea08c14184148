"""Features read from real inputs: the demo service's own effective and ineffective
patches, advisory CWEs and PEP 440 versions."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings

from apps.ml.features import FEATURES, cwe_family, diff_features, version_bump

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
