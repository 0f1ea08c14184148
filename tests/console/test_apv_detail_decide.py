"""Issue 14: the APV detail in the API is enough to decide — its current patch (the revision
a decision names, with its wargame verdict), the decisions the caller may make now, and the
exploitation evidence that ranks it."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from apps.advisories.evidence import epss_import, kev_import
from apps.reviews.models import APV, APVStatus
from apps.reviews.services.apvs import apvs_move_for_patch
from tests.factories import ROOT, pyyaml_upgrade_patch

EVIDENCE = ROOT / "tests" / "advisories" / "evidence_data"


def _client(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def pending(db, tmp_path, django_capture_on_commit_callbacks):
    patch = pyyaml_upgrade_patch(tmp_path)
    apvs_move_for_patch(patch=patch, status=APVStatus.PENDING_REVIEW,
                        before=tuple(APVStatus.values))
    with django_capture_on_commit_callbacks(execute=True):
        kev_import(path=EVIDENCE / "known_exploited_vulnerabilities.json")
        epss_import(path=EVIDENCE / "epss_scores-2026-12-05.csv")
    return APV.objects.get(advisory__osv_id="PYSEC-2021-142"), patch


def test_detail_carries_the_current_patch_and_the_callers_decisions(pending, reviewer, lead):
    apv, patch = pending
    body = _client(reviewer).get(f"/api/v1/apvs/{apv.code}/").json()
    assert body["status"] == "pending_review"
    current = body["current_patch"]
    assert {k: current[k] for k in ("id", "revision", "strategy", "state", "branch",
                                    "branch_exists", "commit_sha", "title", "target_version",
                                    "forge_pr_url", "verdict")} == {
        "id": patch.pk, "revision": patch.revision, "strategy": "dependency_upgrade",
        "state": "proposed", "branch": patch.branch, "branch_exists": True,
        "commit_sha": patch.commit_sha, "title": patch.title, "target_version": "5.4",
        "forge_pr_url": "", "verdict": None,  # not wargamed
    }
    assert current["diff"] == patch.diff and "+PyYAML==5.4" in current["diff"]
    assert current["url"].endswith(f"/api/v1/patches/{patch.pk}/")
    assert patch.branch.startswith("immune/") and patch.revision == 1
    # A reviewer may decide but not accept a risk; a lead may do both.
    assert body["allowed_decisions"] == [
        "approve", "reject", "modify", "escalate", "false_positive"]
    lead_body = _client(lead).get(f"/api/v1/apvs/{apv.code}/").json()
    assert lead_body["allowed_decisions"] == [
        "approve", "reject", "modify", "escalate", "accept_risk", "false_positive"]

    # Exploitation evidence, as on the admin page.
    assert (body["kev_listed"], body["kev_date_added"]) == (True, "2026-11-20")
    assert (body["epss_score"], body["epss_percentile"]) == (0.08917, 0.96187)
    assert body["priority"] == 10 and body["severity_from"] == ""


def test_no_decision_is_offered_on_an_apv_not_awaiting_one(pending, lead):
    apv, patch = pending
    apvs_move_for_patch(patch=patch, status=APVStatus.OPEN,
                        before=(APVStatus.PENDING_REVIEW,))
    body = _client(lead).get(f"/api/v1/apvs/{apv.code}/").json()
    assert body["allowed_decisions"] == []
    assert body["current_patch"]["revision"] == patch.revision


def test_the_admin_page_shows_epss_and_kev(pending, admin_client):
    apv, _patch = pending
    text = admin_client.get(f"/admin/reviews/apv/{apv.pk}/change/").content.decode()
    assert "CISA KEV: exploited in the wild</strong>, added 2026-11-20" in text
    assert "EPSS 0.08917 (percentile 0.96187)" in text
