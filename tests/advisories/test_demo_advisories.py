"""The demo advisory set in data/advisories/ against the PyPA advisory database.

The set holds one OSV record for every PyPA advisory that affects a version pinned by the
demo project. Summaries and details are our own words; the facts (aliases, dates, ranges,
severity vectors) must stay those of the PyPA record with the same id. Plain pytest, no
Django: `apps.advisories.osv` does not import it.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from apps.advisories.osv import RecordError, is_affected, iter_source, parse_osv
from apps.advisories.osv.matching import normalise_name
from tests.helpers import pypa_root

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "data" / "advisories"
SOURCE = "immune demo set, facts from the PyPA advisory database (CC BY 4.0)"
MAX_REFERENCES = 3

# The versions the demo project's requirements.txt pins.
PINS: dict[str, str] = {
    "PyYAML": "5.3.1",
    "Jinja2": "2.10",
    "urllib3": "1.24.1",
    "Django": "3.2",
    "requests": "2.19.1",
    "Werkzeug": "0.15.2",
    "PyJWT": "1.5.0",
    "aiohttp": "3.8.0",
    "GitPython": "3.1.0",
    "MarkupSafe": "1.1.1",
}


def _files() -> list[Path]:
    return sorted(DEMO.glob("*/*.json"))


@cache
def _demo() -> dict[str, dict[str, Any]]:
    """Raw demo records by id (every file must load and parse; checked below)."""
    records: dict[str, dict[str, Any]] = {}
    for item in iter_source(str(DEMO)):
        assert not isinstance(item, RecordError), f"{item.path}: {item.reason}"
        records[item.data["id"]] = item.data
    return records


@cache
def _pypa_package(root: Path, package: str) -> dict[str, dict[str, Any]]:
    """Raw PyPA records of one package folder by id ({} when the package has none)."""
    folder = root / normalise_name("PyPI", package)
    if not folder.is_dir():
        return {}
    records: dict[str, dict[str, Any]] = {}
    for item in iter_source(str(folder)):
        assert not isinstance(item, RecordError), f"{item.path}: {item.reason}"
        records[item.data["id"]] = item.data
    return records


def _affecting(records: dict[str, dict[str, Any]], package: str, version: str) -> set[str]:
    """Ids of the non-withdrawn records with an entry for `package` that affects `version`."""
    name = normalise_name("PyPI", package)
    found = set()
    for advisory_id, data in records.items():
        advisory = parse_osv(data, path=advisory_id, strict=False)
        if advisory.withdrawn is not None:
            continue  # withdrawn advisories affect nothing (OSV § withdrawn)
        if any(
            aff.normalised_name == name and is_affected(aff, version) for aff in advisory.affected
        ):
            found.add(advisory_id)
    return found


def _pypa_record(advisory_id: str) -> dict[str, Any]:
    root = pypa_root()
    demo = _demo()[advisory_id]
    package = demo["affected"][0]["package"]["name"]
    records = _pypa_package(root, package)
    assert advisory_id in records, f"{advisory_id} is not in the PyPA folder of {package}"
    return records[advisory_id]


def _range_facts(data: dict[str, Any]) -> list[tuple[str, str, str, tuple]]:
    return [
        (
            normalise_name(aff["package"]["ecosystem"], aff["package"]["name"]),
            rng["type"],
            rng.get("repo", ""),
            tuple(tuple(event.items()) for event in rng["events"]),
        )
        for aff in data.get("affected", [])
        for rng in aff.get("ranges", [])
    ]


# --- the set on its own ---------------------------------------------------------------------


def test_set_is_not_empty_and_only_json() -> None:
    assert _files(), f"no advisories under {DEMO}"
    others = [
        p.relative_to(DEMO).as_posix()
        for p in DEMO.rglob("*")
        if p.is_file() and p.suffix != ".json" and p.name != "README.md"
    ]
    assert others == []


@pytest.mark.parametrize("path", _files(), ids=lambda p: p.relative_to(DEMO).as_posix())
def test_file_parses_and_is_named_after_its_record(path: Path) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    advisory = parse_osv(data, path=str(path))  # strict: every range event is PEP 440
    assert advisory.id == path.stem
    assert data["schema_version"] == "1.6.0"
    assert data["database_specific"]["source"] == SOURCE
    assert advisory.withdrawn is None
    assert advisory.published is not None and advisory.modified is not None
    summary, details = data["summary"].strip(), data["details"].strip()
    assert summary and "\n" not in summary
    assert details
    assert [a.normalised_name for a in advisory.affected] == [path.parent.name]
    assert all(a.ecosystem == "PyPI" and a.ranges for a in advisory.affected)
    assert 1 <= len(advisory.references) <= MAX_REFERENCES
    for cwe in data["database_specific"].get("cwe_ids", []):
        assert cwe.startswith("CWE-") and cwe[4:].isdigit()


def test_every_source_item_loads_and_ids_are_unique() -> None:
    items = list(iter_source(str(DEMO)))
    errors = [item for item in items if isinstance(item, RecordError)]
    assert errors == []
    ids = [item.data["id"] for item in items]
    assert len(ids) == len(_files())
    assert len(set(ids)) == len(ids)


# --- the set against the PyPA advisory database ---------------------------------------------


@pytest.mark.parametrize(("package", "version"), PINS.items(), ids=list(PINS))
def test_demo_matches_pypa_for_pinned_version(package: str, version: str) -> None:
    expected = _affecting(_pypa_package(pypa_root(), package), package, version)
    assert _affecting(_demo(), package, version) == expected


@pytest.mark.parametrize("advisory_id", sorted(_demo()))
def test_facts_equal_the_pypa_record(advisory_id: str) -> None:
    demo = _demo()[advisory_id]
    pypa = _pypa_record(advisory_id)
    assert demo["aliases"] == pypa.get("aliases", [])
    assert demo["published"] == pypa["published"]
    assert demo["modified"] == pypa["modified"]
    assert _range_facts(demo) == _range_facts(pypa)
    assert [aff["package"] for aff in demo["affected"]] == [
        {key: aff["package"][key] for key in ("ecosystem", "name", "purl")}
        for aff in pypa["affected"]
    ]
    vectors = [(s["type"], s["score"]) for s in demo.get("severity", [])]
    assert vectors == [(s["type"], s["score"]) for s in pypa.get("severity", [])]
    pypa_urls = {ref["url"] for ref in pypa.get("references", [])}
    assert {ref["url"] for ref in demo["references"]} <= pypa_urls


@pytest.mark.parametrize("advisory_id", sorted(_demo()))
def test_text_is_our_own(advisory_id: str) -> None:
    demo = _demo()[advisory_id]
    pypa = _pypa_record(advisory_id)
    for field in ("summary", "details"):
        theirs = (pypa.get(field) or "").strip()
        assert demo[field].strip() != theirs
        if theirs:
            # No long verbatim run: no 60-character slice of ours appears in theirs.
            ours = demo[field]
            assert not any(ours[i : i + 60] in theirs for i in range(len(ours) - 59))
