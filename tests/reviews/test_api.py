"""REST API of issue 3: advisories, projects (+ scan), APVs (+ stats); auth and queries."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from apps.reviews.models import APV


@pytest.fixture
def api(reviewer):
    client = APIClient()
    client.force_authenticate(reviewer)
    return client


def test_everything_needs_authentication(db):
    client = APIClient()
    for path in ["/api/v1/advisories/", "/api/v1/projects/", "/api/v1/apvs/",
                 "/api/v1/apvs/stats/"]:
        response = client.get(path)
        assert response.status_code == 401, path
        assert response.json()["error"]["code"] == "not_authenticated"


def test_demo_apvs_are_listed_with_filters_and_ordering(api, demo):
    body = api.get("/api/v1/apvs/", {"project": "demo"}).json()
    assert body["count"] == APV.objects.count() > 30
    priorities = [row["priority"] for row in body["results"]]
    assert priorities == sorted(priorities, reverse=True)
    yaml_rows = api.get("/api/v1/apvs/", {"package": "PyYAML"}).json()["results"]
    assert [r["advisory"] for r in yaml_rows] == ["PYSEC-2021-142"]
    assert yaml_rows[0]["aliases"][0] == "CVE-2020-14343"
    assert yaml_rows[0]["manifest"] == "requirements.txt" and yaml_rows[0]["line"] == 2
    by_alias = api.get("/api/v1/apvs/", {"advisory": "CVE-2020-14343"}).json()
    assert by_alias["count"] == 1
    high = api.get("/api/v1/apvs/", {"severity": "high,critical"}).json()["results"]
    assert high and {r["severity"] for r in high} <= {"high", "critical"}
    by_sla = api.get("/api/v1/apvs/", {"ordering": "sla_due_at", "page_size": 100}).json()
    dues = [r["sla_due_at"] for r in by_sla["results"]]
    assert dues == sorted(dues)
    assert api.get("/api/v1/apvs/", {"status": "resolved"}).json()["count"] == 0
    pending = api.get("/api/v1/apvs/", {"status": "pending_review"}).json()["count"]
    assert pending == body["count"]


def test_apv_detail_by_code_and_404_format(api, demo):
    code = APV.objects.order_by("code").first().code
    detail = api.get(f"/api/v1/apvs/{code}/").json()
    assert detail["code"] == code and detail["project"] == "demo"
    missing = api.get("/api/v1/apvs/APV-19990101-0001/")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


def test_stats_count_by_status_and_severity(api, demo):
    stats = api.get("/api/v1/apvs/stats/").json()
    assert stats["total"] == APV.objects.count()
    assert stats["by_status"]["pending_review"] == stats["total"]  # demo proposed patches
    assert sum(stats["by_severity"].values()) == stats["total"]
    assert stats["overdue"] == 0


def test_advisory_filters_and_detail(api, demo):
    pyyaml = api.get("/api/v1/advisories/", {"package": "PyYAML"}).json()
    assert [a["id"] for a in pyyaml["results"]] == ["PYSEC-2021-142"]
    by_alias = api.get("/api/v1/advisories/", {"alias": "CVE-2019-10906"}).json()
    assert [a["id"] for a in by_alias["results"]] == ["PYSEC-2019-217"]
    searched = api.get("/api/v1/advisories/", {"search": "GHSA-8q59-q68h-6hv4"}).json()
    assert [a["id"] for a in searched["results"]] == ["PYSEC-2021-142"]
    eco = api.get("/api/v1/advisories/", {"ecosystem": "npm"}).json()
    assert eco["count"] == 0
    detail = api.get("/api/v1/advisories/CVE-2020-14343/").json()  # an alias finds it too
    assert detail["id"] == "PYSEC-2021-142" and detail["raw"]["id"] == "PYSEC-2021-142"
    assert detail["affected"][0]["fixed_versions"] == ["5.4"]


@pytest.mark.parametrize("path", ["/api/v1/apvs/", "/api/v1/advisories/"])
def test_list_pages_do_a_constant_number_of_queries(api, demo, path):
    def count(page_size):
        with CaptureQueriesContext(connection) as ctx:
            response = api.get(path, {"page_size": page_size})
        assert response.status_code == 200
        assert len(response.json()["results"]) == min(page_size, response.json()["count"])
        return len(ctx.captured_queries)

    assert count(2) == count(40)


def test_reviewers_read_projects_but_only_leads_create_and_scan(api, demo, lead, tmp_path):
    assert api.get("/api/v1/projects/").json()["results"][0]["name"] == "demo"
    payload = {"name": "other", "path": str(demo.path)}
    assert api.post("/api/v1/projects/", payload, format="json").status_code == 403
    assert api.post(f"/api/v1/projects/{demo.pk}/scan/").status_code == 403
    lead_api = APIClient()
    lead_api.force_authenticate(lead)
    created = lead_api.post("/api/v1/projects/", payload, format="json")
    assert created.status_code == 201 and created.json()["name"] == "other"
    bad = lead_api.post("/api/v1/projects/", {"name": "x", "path": str(tmp_path)},
                        format="json")
    assert bad.status_code == 400 and "not a git working copy" in bad.json()["error"]["message"]
    scanned = lead_api.post(f"/api/v1/projects/{demo.pk}/scan/").json()
    assert scanned["apvs"]["created"] == 0 and scanned["apvs"]["unchanged"] > 30
