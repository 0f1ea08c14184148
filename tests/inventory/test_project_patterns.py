"""Per-project include/exclude patterns: command, API, admin, and the scan that applies them."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from apps.inventory.models import Dependency, Project
from apps.inventory.services import project_add, project_scan
from tests.factories import make_repo

REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path / "service", {
        "requirements.txt": "PyYAML==5.3.1\n",
        "tests/fixtures/vulnerable/requirements.txt": "Django==1.11\n",
        "tests/fixtures/vulnerable/pdm.lock": (
            Path(__file__).parent / "data" / "pdm4" / "pdm.lock").read_text(),
    })


@pytest.fixture
def lead_api(lead):
    client = APIClient()
    client.force_authenticate(lead)
    return client


def test_add_project_command_takes_patterns_and_the_scan_applies_them(repo, db) -> None:
    out = io.StringIO()
    call_command("add_project", "svc", "--path", str(repo), "--exclude", "tests/**",
                 "--exclude", "**/fixtures/**", stdout=out)
    project = Project.objects.get(name="svc")
    assert project.manifest_exclude == ["tests/**", "**/fixtures/**"]
    assert "exclude tests/** **/fixtures/**" in out.getvalue()

    result = project_scan(project=project)
    assert result.manifests == ["requirements.txt"]
    assert result.excluded == ["tests/fixtures/vulnerable/pdm.lock",
                               "tests/fixtures/vulnerable/requirements.txt"]
    assert set(Dependency.objects.values_list("manifest_path", flat=True)) == {"requirements.txt"}

    with pytest.raises(CommandError, match="'..' segment"):
        call_command("add_project", "bad", "--path", str(repo), "--exclude", "../x/**",
                     stdout=io.StringIO())


def test_api_creates_and_updates_patterns_and_the_scan_reports_the_excluded(
        repo, lead_api, reviewer) -> None:
    response = lead_api.post("/api/v1/projects/", {
        "name": "svc", "path": str(repo), "manifest_include": ["**/requirements.txt"]},
        format="json")
    assert response.status_code == 201, response.content
    assert response.json()["manifest_include"] == ["**/requirements.txt"]
    pk = response.json()["id"]

    scan = lead_api.post(f"/api/v1/projects/{pk}/scan/").json()
    assert scan["manifests"] == ["requirements.txt", "tests/fixtures/vulnerable/requirements.txt"]
    assert (scan["excluded"], scan["excluded_manifests"]) == (
        1, ["tests/fixtures/vulnerable/pdm.lock"])

    response = lead_api.patch(f"/api/v1/projects/{pk}/", {"manifest_exclude": ["tests/**"]},
                              format="json")
    assert response.status_code == 200, response.content
    assert response.json()["manifest_exclude"] == ["tests/**"]
    assert response.json()["manifest_include"] == ["**/requirements.txt"]  # left as it was
    scan = lead_api.post(f"/api/v1/projects/{pk}/scan/").json()
    assert scan["manifests"] == ["requirements.txt"] and scan["excluded"] == 2
    # What the excluded manifest pinned is no longer present (its APVs resolve).
    assert not Dependency.objects.get(manifest_path__startswith="tests/").present

    bad = lead_api.patch(f"/api/v1/projects/{pk}/", {"manifest_exclude": ["../**"]},
                         format="json")
    assert bad.status_code == 400 and "manifest_exclude" in bad.json()["error"]["details"]

    reader = APIClient()
    reader.force_authenticate(reviewer)
    assert reader.get(f"/api/v1/projects/{pk}/").status_code == 200
    assert reader.patch(f"/api/v1/projects/{pk}/", {"manifest_exclude": []},
                        format="json").status_code == 403


def test_admin_edits_patterns_one_per_line(repo, admin_client, db) -> None:
    response = admin_client.post("/admin/inventory/project/add/", {
        "name": "svc", "path": str(repo), "default_branch": "main", "description": "",
        "manifest_include": "", "manifest_exclude": "tests/**\n\n  docs/**  \n"})
    assert response.status_code == 302, response.content.decode()[:2000]
    project = Project.objects.get(name="svc")
    assert (project.manifest_include, project.manifest_exclude) == ([], ["tests/**", "docs/**"])

    page = admin_client.get(f"/admin/inventory/project/{project.pk}/change/").content.decode()
    assert "tests/**\ndocs/**</textarea>" in page

    response = admin_client.post(f"/admin/inventory/project/{project.pk}/change/", {
        "name": "svc", "path": str(repo), "default_branch": "main", "description": "",
        "manifest_include": "../elsewhere/**", "manifest_exclude": ""})
    assert response.status_code == 200 and "segment" in response.content.decode()
    project.refresh_from_db()
    assert project.manifest_include == []


def test_a_self_scan_excluding_tests_finds_no_test_fixtures(db) -> None:
    """This repository's committed tree: with tests/** excluded, no fixture is read."""
    branch = subprocess.run(["git", "-C", str(REPOSITORY), "rev-parse", "--abbrev-ref", "HEAD"],
                            capture_output=True, text=True, check=True).stdout.strip()
    project = project_add(name="immune", path=str(REPOSITORY), default_branch=branch,
                          manifest_exclude=["tests/**"])
    result = project_scan(project=project)
    assert result.excluded and all(path.startswith("tests/") for path in result.excluded)
    assert not [m for m in result.manifests if m.startswith("tests/")]
    assert not Dependency.objects.filter(project=project, manifest_path__startswith="tests/")
    assert Dependency.objects.filter(project=project, manifest_path="requirements/base.txt")
