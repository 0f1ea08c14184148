"""The admin pages of issue 3 render the demo's real rows, and the scan action works."""

from __future__ import annotations

from apps.reviews.models import APV


def test_apv_changelist_shows_codes_filters_and_search(admin_client, demo):
    page = admin_client.get("/admin/reviews/apv/").content.decode()
    assert APV.objects.order_by("-priority").first().code in page
    assert "PYSEC-2021-142" in page and "background:" in page  # severity badges
    found = admin_client.get("/admin/reviews/apv/", {"q": "CVE-2020-14343"}).content.decode()
    assert "PYSEC-2021-142" in found and "PYSEC-2019-217" not in found
    overdue = admin_client.get("/admin/reviews/apv/", {"overdue": "yes"})
    assert overdue.status_code == 200 and "0 APVs" in overdue.content.decode()


def test_advisory_admin_is_read_only_and_searchable(admin_client, demo):
    page = admin_client.get("/admin/advisories/advisory/", {"q": "GHSA-8q59-q68h-6hv4"})
    assert "PYSEC-2021-142" in page.content.decode()
    assert admin_client.get("/admin/advisories/advisory/add/").status_code == 403


def test_project_scan_action_reports_the_outcome(admin_client, demo):
    from apps.inventory.models import Project

    project = Project.objects.get(name="demo")
    response = admin_client.post(
        "/admin/inventory/project/",
        {"action": "scan", "index": 0, "_selected_action": [project.pk]}, follow=True,
    )
    assert "demo: 11 dependencies, 0 new apvs, 0 resolved" in response.content.decode().lower()
