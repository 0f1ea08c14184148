"""Built-in package PoCs (set A), run for real against a vulnerable and a fixed version.

Each PoC must report ``exploited: true`` with exit code 1 on its ``vulnerable:`` version and
``exploited: false`` with exit code 0 on its ``fixed:`` version. The install-running tests
are ``slow`` (the first run builds the venvs; later runs reuse them, see ``pocrun``).
"""

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

POCS = [
    "pyyaml_pysec_2021_142.py",
    "jinja2_pysec_2019_217.py",
    "urllib3_pysec_2023_192.py",
    "requests_pysec_2018_28.py",
    "pyjwt_pysec_2022_202.py",
]


@pytest.mark.parametrize("poc", POCS)
def test_headers(poc):
    found = headers(poc)
    missing = [key for key in REQUIRED if not found.get(key)]
    assert not missing, f"{poc} lacks headers {missing}"
    assert found["immune-exploit"] == "1"
    assert re.fullmatch(r"CWE-\d+", found["cwe"])
    ids = advisories(poc)
    assert any(i.startswith(("PYSEC-", "GHSA-")) for i in ids)
    assert poc.startswith(found["package"].lower() + "_")
    assert poc.removesuffix(".py").endswith(ids[0].lower().replace("-", "_"))
    lines = (PACKAGES / poc).read_text(encoding="utf-8").splitlines()
    assert lines[0] == "# immune-exploit: 1"


@pytest.mark.parametrize("poc", POCS)
def test_advisories_match_the_advisory_db(poc):
    found = headers(poc)
    folder = ADVISORY_DB / found["package"].lower()
    if not folder.is_dir():
        pytest.skip(f"no advisory data at {folder}")
    ids = advisories(poc)
    files = {path.stem.upper(): path for path in folder.glob("*.yaml")}
    records = [files[i] for i in ids if i in files]
    assert records, f"none of {ids} is in {folder}"
    record = yaml.safe_load(records[0].read_text(encoding="utf-8"))
    # The header lists exactly the advisory's id and its aliases (ids compare uppercased).
    assert set(ids) == {i.upper() for i in (record["id"], *record.get("aliases", []))}
    fixed = {event["fixed"] for affected in record["affected"]
             for rng in affected.get("ranges", []) for event in rng.get("events", [])
             if "fixed" in event}
    assert found["fixed"] in fixed, f"{found['fixed']} is not a fixed version in {fixed}"


@pytest.mark.slow
@pytest.mark.parametrize("poc", POCS)
def test_vulnerable_version_is_exploited(poc):
    result, detail = run_builtin(poc, headers(poc)["vulnerable"])
    assert result.exit_code == 1, detail
    assert result.evidence["exploited"] is True, detail


@pytest.mark.slow
@pytest.mark.parametrize("poc", POCS)
def test_fixed_version_is_not_exploited(poc):
    result, detail = run_builtin(poc, headers(poc)["fixed"])
    assert result.exit_code == 0, detail
    assert result.evidence["exploited"] is False, detail
    assert not result.evidence.get("inconclusive"), detail
