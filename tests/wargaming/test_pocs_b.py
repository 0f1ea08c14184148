"""Built-in package PoCs (set B), run for real against a vulnerable and a fixed version.

Each PoC must report ``exploited: true`` with exit code 1 on its ``vulnerable:`` version and
``exploited: false`` with exit code 0 on its ``fixed:`` version, and its evidence must show
the observation it is built on (the canary read back, the marker created, ...). The
install-running tests are ``slow`` (the first run builds the venvs; later runs reuse them,
see ``pocrun``).
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


def _django(evidence):
    # The random canary came back through Extract(lookup_name=...), and the Trunc(kind=...)
    # predicate answered 1 row for the right guess, 0 for a wrong one.
    assert evidence["extract_readback"] == evidence["canary"]
    assert evidence["trunc_oracle"] == {"right_guess_rows": 1, "wrong_guess_rows": 0}


def _werkzeug(evidence):
    assert evidence["cookies_seen_by_app"]["__Host-test"] == "bad"


def _aiohttp(evidence):
    assert evidence["status"] == 200
    assert evidence["canary"] in evidence["body"]


def _gitpython(evidence):
    assert evidence["marker_created"] is True
    assert evidence["url"].startswith("ext::")


def _jinja2(evidence):
    assert evidence["slowdown_vs_control"] >= 50
    assert evidence["growth_when_doubled"] > 1.5  # evidence only; noisy under load


# PoC file -> what its evidence must show when it reports exploited.
POCS = {
    "django_pysec_2022_213.py": _django,
    "werkzeug_pysec_2023_57.py": _werkzeug,
    "aiohttp_pysec_2024_24.py": _aiohttp,
    "gitpython_pysec_2022_42992.py": _gitpython,
    "jinja2_pysec_2021_66.py": _jinja2,
}


@pytest.mark.parametrize("poc", POCS)
def test_headers(poc):
    found = headers(poc)
    missing = [key for key in REQUIRED if not found.get(key)]
    assert not missing, f"{poc} lacks headers {missing}"
    lines = (PACKAGES / poc).read_text(encoding="utf-8").splitlines()
    assert lines[0] == "# immune-exploit: 1"
    assert re.fullmatch(r"CWE-\d+", found["cwe"])
    ids = advisories(poc)
    assert ids[0].startswith("PYSEC-")
    assert poc.startswith(found["package"].lower() + "_")
    assert poc.removesuffix(".py").endswith(ids[0].lower().replace("-", "_"))
    assert found["vulnerable"] != found["fixed"]


@pytest.mark.parametrize("poc", POCS)
def test_advisories_match_the_advisory_db(poc):
    found = headers(poc)
    folder = ADVISORY_DB / found["package"].lower()
    if not folder.is_dir():
        pytest.skip(f"no advisory data at {folder}")
    ids = advisories(poc)
    record_file = folder / f"{ids[0]}.yaml"
    assert record_file.exists(), f"{ids[0]} is not in {folder}"
    record = yaml.safe_load(record_file.read_text(encoding="utf-8"))
    # The header lists exactly the advisory's id and its aliases (GHSA ids are lower case
    # in the data, upper case on GitHub: compare case-blind).
    assert set(ids) == {i.upper() for i in (record["id"], *record.get("aliases", []))}
    events = [event for affected in record["affected"]
              for rng in affected.get("ranges", []) if rng["type"] == "ECOSYSTEM"
              for event in rng.get("events", [])]
    fixed = {event["fixed"] for event in events if "fixed" in event}
    assert found["fixed"] in fixed, f"{found['fixed']} is not a fixed version in {fixed}"
    # The vulnerable version is inside an affected range: the nearest fixed version above
    # it is the header's fixed version (PEP 440 ordering).
    from packaging.version import Version

    vulnerable = Version(found["vulnerable"])
    above = sorted(Version(f) for f in fixed if Version(f) > vulnerable)
    assert above and above[0] == Version(found["fixed"]), (vulnerable, sorted(fixed))
    introduced = [Version(e["introduced"]) for e in events if "introduced" in e]
    assert any(i <= vulnerable for i in introduced)


@pytest.mark.slow
@pytest.mark.parametrize("poc", POCS)
def test_vulnerable_version_is_exploited(poc):
    result, detail = run_builtin(poc, headers(poc)["vulnerable"])
    assert result.exit_code == 1, detail
    assert result.evidence["exploited"] is True, detail
    POCS[poc](result.evidence)


@pytest.mark.slow
@pytest.mark.parametrize("poc", POCS)
def test_fixed_version_is_not_exploited(poc):
    result, detail = run_builtin(poc, headers(poc)["fixed"])
    assert result.exit_code == 0, detail
    assert result.evidence["exploited"] is False, detail
    assert not result.evidence.get("inconclusive"), detail
