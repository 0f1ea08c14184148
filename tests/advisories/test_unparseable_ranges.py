"""Ranges whose events are no version of the ecosystem (issue 13).

Real cases: binderhub PYSEC-2021-371 (`fixed: 0.2.0-n653`) and steam PYSEC-2019-125
(`fixed: 2019-09-12`). The record is imported, the range marked unparseable; matching uses the
record's `versions` when it has them, else every version is "possibly affected", with the
reason on the APV.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from apps.advisories.models import AffectedPackage
from apps.advisories.osv import AdvisoryParseError, is_affected, parse_osv, possibly_affected
from apps.advisories.selectors import AffectedIndex, advisory_match_reason
from apps.advisories.services import advisories_import
from apps.inventory.services import project_add, project_scan
from apps.reviews.models import APV
from tests.factories import make_repo
from tests.helpers import pypa_root

REAL = {"binderhub/PYSEC-2021-371.yaml": "0.2.0-n653", "steam/PYSEC-2019-125.yaml": "2019-09-12"}


def legacy(osv_id: str, *, versions: list[str] | None = None) -> dict:
    affected = {
        "package": {"ecosystem": "PyPI", "name": "legacy-pkg"},
        "ranges": [{"type": "ECOSYSTEM",
                    "events": [{"introduced": "0"}, {"fixed": "0.2.0-n653"}]}],
    }
    if versions is not None:
        affected["versions"] = versions
    return {"id": osv_id, "modified": "2024-01-01T00:00:00Z", "affected": [affected]}


REASON = "ECOSYSTEM range event fixed '0.2.0-n653' is not a PEP 440 version"


def test_strict_parse_refuses_the_record_lenient_parse_marks_the_range():
    with pytest.raises(AdvisoryParseError, match="invalid PEP 440 version '0.2.0-n653'"):
        parse_osv(legacy("X"), path="x")
    parsed = parse_osv(legacy("X"), path="x", strict=False)
    (rng,) = parsed.affected[0].ranges
    assert rng.unparseable == REASON
    assert parsed.unparseable_ranges == (f"affected[0].ranges[0]: {REASON}",)


def test_without_versions_every_version_is_possibly_affected_with_the_reason():
    (affected,) = parse_osv(legacy("X"), path="x", strict=False).affected
    for version in ("0.1.0", "0.2.0", "9.9"):
        assert not is_affected(affected, version)
        reason = possibly_affected(affected, version)
        assert reason.startswith(f"possibly affected: {REASON}")
        assert "every version of legacy-pkg" in reason


def test_with_versions_the_list_decides_and_nothing_is_merely_possible():
    (affected,) = parse_osv(legacy("X", versions=["0.1.0", "0.1.1"]), path="x",
                            strict=False).affected
    assert is_affected(affected, "0.1.0") and is_affected(affected, "0.1.1")
    assert not is_affected(affected, "0.2.0")
    assert possibly_affected(affected, "0.2.0") == ""
    assert possibly_affected(affected, "0.1.0") == ""


def test_an_orderable_range_beside_it_still_decides_for_sure():
    data = legacy("X")
    data["affected"][0]["ranges"].append(
        {"type": "ECOSYSTEM", "events": [{"introduced": "1.0"}, {"fixed": "1.5"}]})
    (affected,) = parse_osv(data, path="x", strict=False).affected
    assert is_affected(affected, "1.2") and possibly_affected(affected, "1.2") == ""
    assert possibly_affected(affected, "2.0").startswith("possibly affected:")


@pytest.mark.django_db
def test_stored_index_matches_possibly_affected_and_explains_why(tmp_path):
    (tmp_path / "no-list.json").write_text(json.dumps(legacy("PYSEC-0000-10")))
    listed = legacy("PYSEC-0000-11", versions=["0.1.0"])
    listed["affected"][0]["package"]["name"] = "listed-pkg"
    (tmp_path / "listed.json").write_text(json.dumps(listed))
    report = advisories_import(sources=[str(tmp_path)])
    assert (report.created, report.failed) == (2, 0)
    assert [n["id"] for n in report.unparseable_ranges] == ["PYSEC-0000-11", "PYSEC-0000-10"]
    row = AffectedPackage.objects.get(advisory__osv_id="PYSEC-0000-10")
    assert row.unparseable_reason == REASON
    assert row.ranges[0]["unparseable"] == REASON

    index = AffectedIndex([("PyPI", "legacy-pkg"), ("PyPI", "listed-pkg")])
    ((advisory, fixed),) = index.matches("PyPI", "legacy-pkg", "3.0")
    assert advisory.osv_id == "PYSEC-0000-10" and fixed == ("0.2.0-n653",)
    reason = advisory_match_reason(advisory=advisory, ecosystem="PyPI",
                                   normalised_name="legacy-pkg", version="3.0")
    assert reason.startswith(f"possibly affected: {REASON}")
    # With a versions list: exactly the listed versions, and for sure.
    assert [a.osv_id for a, _ in index.matches("PyPI", "listed-pkg", "0.1.0")] == ["PYSEC-0000-11"]
    assert index.matches("PyPI", "listed-pkg", "0.1.5") == []
    listed_advisory = index.matches("PyPI", "listed-pkg", "0.1.0")[0][0]
    assert advisory_match_reason(advisory=listed_advisory, ecosystem="PyPI",
                                 normalised_name="listed-pkg", version="0.1.0") == ""


@pytest.mark.django_db
def test_real_pypa_records_import_and_raise_a_possibly_affected_apv(tmp_path, admin_client):
    """binderhub's RCE now raises an APV, and the APV page says why it is only possible."""
    root = pypa_root()
    report = advisories_import(sources=[str(root / name) for name in REAL], source_name="pypa")
    assert (report.created, report.failed) == (2, 0)
    for name, event in REAL.items():
        osv_id = Path(name).stem
        row = AffectedPackage.objects.get(advisory__osv_id=osv_id,
                                          unparseable_reason__contains=event)
        assert f"fixed {event!r} is not a PEP 440 version" in row.unparseable_reason

    repo = make_repo(tmp_path / "svc", {"requirements.txt": "binderhub==0.2.0\nsteam==1.4.4\n"})
    project_scan(project=project_add(name="svc", path=str(repo)))
    apvs = {apv.dependency.normalised_name: apv
            for apv in APV.objects.select_related("dependency", "advisory")}
    assert {name: apv.advisory.osv_id for name, apv in apvs.items()} == {
        "binderhub": "PYSEC-2021-371", "steam": "PYSEC-2019-125"}
    page = admin_client.get(f"/admin/reviews/apv/{apvs['binderhub'].pk}/change/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "possibly affected: ECOSYSTEM range event fixed &#x27;0.2.0-n653&#x27;" in text
