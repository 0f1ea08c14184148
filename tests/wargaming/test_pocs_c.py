"""Built-in package PoCs (set C: the corpus's packages beyond the demo's), run for real
against a vulnerable and a fixed version, like sets A and B: ``exploited: true`` with exit
code 1 on the ``vulnerable:`` version, ``exploited: false`` with exit code 0 on ``fixed:``,
and on the release just before the vulnerable one (still vulnerable) exploited too."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.wargaming.pocrun import (
    ADVISORY_DB,
    PACKAGES,
    REQUIRED,
    advisories,
    headers,
    run_builtin,
)

POCS = {
    # PoC → a release before its vulnerable one that the advisory also covers
    "babel_pysec_2021_421.py": "2.8.1",
    "rsa_pysec_2020_99.py": "3.4.2",
}


@pytest.mark.parametrize("poc", POCS)
def test_headers(poc):
    found = headers(poc)
    missing = [key for key in REQUIRED if not found.get(key)]
    assert not missing, f"{poc} lacks headers {missing}"
    assert re.fullmatch(r"CWE-\d+", found["cwe"])
    assert poc.startswith(found["package"].lower() + "_")
    assert poc.removesuffix(".py").endswith(advisories(poc)[0].lower().replace("-", "_"))
    assert (PACKAGES / poc).read_text(encoding="utf-8").splitlines()[0] == "# immune-exploit: 1"


@pytest.mark.parametrize("poc", POCS)
def test_advisories_match_the_advisory_db(poc):
    found = headers(poc)
    folder = ADVISORY_DB / found["package"].lower()
    if not folder.is_dir():
        pytest.skip(f"no advisory data at {folder}")
    ids = advisories(poc)
    record = yaml.safe_load((folder / f"{ids[0]}.yaml").read_text(encoding="utf-8"))
    assert set(ids) == {i.upper() for i in (record["id"], *record.get("aliases", []))}
    fixed = {event["fixed"] for affected in record["affected"]
             for rng in affected.get("ranges", []) for event in rng.get("events", [])
             if "fixed" in event}
    assert found["fixed"] in fixed, f"{found['fixed']} is not a fixed version in {fixed}"
    listed = {v for affected in record["affected"] for v in affected.get("versions", [])}
    assert found["vulnerable"] in listed and POCS[poc] in listed


@pytest.mark.slow
@pytest.mark.parametrize("poc", POCS)
def test_vulnerable_versions_are_exploited(poc):
    for version in (headers(poc)["vulnerable"], POCS[poc]):
        result, detail = run_builtin(poc, version)
        assert result.exit_code == 1, detail
        assert result.evidence["exploited"] is True, detail


@pytest.mark.slow
@pytest.mark.parametrize("poc", POCS)
def test_fixed_version_is_not_exploited(poc):
    result, detail = run_builtin(poc, headers(poc)["fixed"])
    assert result.exit_code == 0, detail
    assert result.evidence["exploited"] is False, detail
    assert not result.evidence.get("inconclusive"), detail
