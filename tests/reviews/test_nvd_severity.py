"""Issue 18, "Done when": after the PyPA data and an NVD file covering their CVEs, an unscored
advisory such as PYSEC-2021-142 shows NVD's CVSS and severity on its APVs, their priority and
SLA follow it, the scan gate and the ML features use it, the API and the admin page show the
vector and its source, and re-importing the same NVD file writes nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import Q
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from apps.advisories.models import Advisory
from apps.advisories.services import advisories_import
from apps.inventory.services import project_add, project_scan
from apps.ml.features import patch_features
from apps.reviews.models import APV
from apps.reviews.services.patches import patches_propose
from tests.advisories.nvd_feed import KNOWN, write_feed
from tests.factories import make_repo, pypa_root
from tests.helpers import last_json_line

CVSS_31_CRITICAL = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"


def _writes(queries) -> list[str]:
    return [q["sql"] for q in queries.captured_queries
            if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))]


def _gate(repo) -> int:
    """``manage.py scan`` as a CI gate: fail on critical findings, unknown ones ignored."""
    try:
        call_command("scan", str(repo), "--fail-on", "critical", "--unknown-severity", "ignore",
                     "--format", "json", "--output", str(repo / "scan.json"))
    except CommandError as exc:
        return exc.returncode
    return 0


def _cve_ids_named() -> list[str]:
    names: set[str] = set()
    for osv_id, aliases in Advisory.objects.values_list("osv_id", "aliases"):
        names.update(n for n in (osv_id, *aliases) if n.startswith("CVE-"))
    return sorted(names)


@pytest.mark.slow
@pytest.mark.django_db
def test_nvd_scores_the_pypa_advisories_and_their_apvs_follow(
        tmp_path, capsys, reviewer, client, django_capture_on_commit_callbacks):
    advisories_import(sources=[str(pypa_root())], source_name="pypa")
    unscored_before = Advisory.objects.filter(cvss_score__isnull=True).count()
    pysec = Advisory.objects.get(osv_id="PYSEC-2021-142")
    assert (pysec.severity, pysec.cvss_score, pysec.aliases[0]) == (
        "unknown", None, "CVE-2020-14343")

    repo = make_repo(tmp_path / "svc", {"requirements.txt": "PyYAML==5.3.1\n"})
    project = project_scan(project=project_add(name="svc", path=str(repo))).project
    apv = APV.objects.get(project=project, advisory=pysec)
    # Unknown: a stand-in score of 5, +1 direct, +0.5 a fix exists → 7; the medium SLA.
    assert (apv.severity, apv.cvss_score, apv.priority) == ("unknown", None, 7)
    assert apv.sla_due_at == apv.first_seen_at + timedelta(days=90)
    assert _gate(repo) == 0  # nothing known to be critical

    # An NVD feed covering every CVE the PyPA advisories name (NVD's real metrics for the
    # CVEs in KNOWN, synthetic ones for the rest: tests/advisories/nvd_feed.py).
    cves = _cve_ids_named()
    feed = write_feed(tmp_path / "nvdcve-2.0-pypa.json.gz", cves)
    with django_capture_on_commit_callbacks(execute=True):
        call_command("import_nvd", str(feed), "--json")
    report = last_json_line(capsys.readouterr().out)
    assert (report["rows"], report["created"], report["failed"]) == (len(cves), len(cves), 0)
    unscored_after = Advisory.objects.filter(cvss_score__isnull=True).count()
    print(f"\nPyPA advisories without a CVSS score: {unscored_before} before NVD, "
          f"{unscored_after} after ({report['advisories_updated']} advisories updated "
          f"from {len(cves)} CVEs, {sum(c in KNOWN for c in cves)} with NVD's real metrics)")
    # Those left have no CVE id at all.
    assert not Advisory.objects.filter(cvss_score__isnull=True).filter(
        Q(osv_id__startswith="CVE-") | Q(alias_rows__alias__startswith="CVE-")).exists()
    # An advisory's own score still wins: the 202 scored ones keep theirs.
    assert Advisory.objects.filter(cvss_source="", cvss_score__isnull=False).count() == (
        Advisory.objects.count() - unscored_before)

    # The advisory: NVD's Primary CVSS 3.1 for CVE-2020-14343, marked as NVD's.
    pysec.refresh_from_db()
    assert (pysec.severity, pysec.cvss_score, pysec.cvss_vector, pysec.cvss_source,
            pysec.severity_from, pysec.nvd_metric_source, pysec.nvd_metric_type) == (
        "critical", 9.8, CVSS_31_CRITICAL, "nvd", "CVE-2020-14343", "nvd@nist.gov", "Primary")

    # Its APV follows at once (no rescan): severity, score, priority, SLA.
    apv.refresh_from_db()
    assert (apv.severity, apv.cvss_score, apv.priority) == ("critical", 9.8, 10)
    assert apv.sla_due_at == apv.first_seen_at + timedelta(days=7)
    # A rescan agrees with it.
    project_scan(project=project)
    assert APV.objects.get(pk=apv.pk).sla_due_at == apv.sla_due_at

    # The API shows the vector and where it comes from.
    api = APIClient()
    api.force_authenticate(reviewer)
    body = api.get(f"/api/v1/apvs/{apv.code}/").json()
    assert {k: body[k] for k in ("severity", "cvss_score", "cvss_vector", "cvss_source",
                                 "severity_from", "nvd_metric_source", "nvd_metric_type",
                                 "priority")} == {
        "severity": "critical", "cvss_score": 9.8, "cvss_vector": CVSS_31_CRITICAL,
        "cvss_source": "nvd", "severity_from": "CVE-2020-14343",
        "nvd_metric_source": "nvd@nist.gov", "nvd_metric_type": "Primary", "priority": 10}
    listed = api.get("/api/v1/apvs/", {"severity": "critical"}).json()["results"]
    assert [a["cvss_source"] for a in listed if a["code"] == apv.code] == ["nvd"]
    # And the admin page, to a reviewer.
    client.force_login(reviewer)
    page = client.get(f"/admin/reviews/apv/{apv.pk}/change/").content.decode()
    assert CVSS_31_CRITICAL in page
    assert "from NVD's record of CVE-2020-14343: Primary metric by nvd@nist.gov" in page

    # The CI gate fails on it now.
    assert _gate(repo) == 1
    # The model's features describe it with NVD's score and severity.
    patch = patches_propose(project=project).proposed[0]
    features = patch_features(patch, scope=["PYSEC-2021-142"])
    assert (features["cvss_score"], features["severity"]) == (9.8, "critical")

    # Re-importing the same NVD file writes nothing.
    with CaptureQueriesContext(connection) as queries:
        call_command("import_nvd", str(feed), "--json")
    again = last_json_line(capsys.readouterr().out)
    assert (again["created"], again["updated"], again["unchanged"],
            again["advisories_updated"]) == (0, 0, len(cves), 0)
    assert _writes(queries) == []
