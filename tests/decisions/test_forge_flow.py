"""With GITHUB_TOKEN and a repository configured, patches become pull requests that the
decisions merge or close: end to end against the recorded GitHub API and a real bare
repository as the push target."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from apps.reviews.models import Patch
from apps.reviews.services.patches import patches_propose
from tests.decisions.conftest import apv_of
from tests.factories import DEMO_ADVISORIES, git
from tests.reviews.test_forge_github import REPOSITORY, TOKEN, RecordedGitHub


@pytest.fixture
def github(settings):
    server = RecordedGitHub().start()
    settings.GITHUB_TOKEN = TOKEN
    settings.GITHUB_API_URL = server.url
    yield server
    server.stop()


@pytest.fixture
def forge_project(db, settings, tmp_path, github):
    import io

    from django.core.management import call_command

    from apps.demo.services import ensure_demo_repository
    from apps.inventory.services import project_add, project_scan

    settings.IMMUNE_DATA_DIR = tmp_path
    call_command("import_advisories", str(DEMO_ADVISORIES), stdout=io.StringIO())
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    project = project_add(name="demo", path=str(ensure_demo_repository(tmp_path / "demo")))
    project.forge_repository, project.forge_push_url = REPOSITORY, str(bare)
    project.save()
    project_scan(project=project)
    github.add("POST", f"/repos/{REPOSITORY}/pulls", 201, "pulls_create_201.json")
    github.add("PUT", f"/repos/{REPOSITORY}/pulls/42/merge", 200, "pulls_merge_200.json")
    github.add("PATCH", f"/repos/{REPOSITORY}/pulls/42", 200, "pulls_update_closed_200.json")
    assert patches_propose(project=project).failed == []
    return project, bare


def test_proposals_are_pushed_and_opened_as_pull_requests(forge_project, github):
    project, bare = forge_project
    patch = apv_of("pyyaml").current_patch
    assert patch.forge_pr_number == 42
    assert patch.forge_pr_url == "https://github.com/acme/webshop/pull/42"
    assert git(bare, "rev-parse", f"refs/heads/{patch.branch}").strip() == patch.commit_sha
    created = [r for r in github.requests if r.method == "POST"]
    assert created and created[0].authorization == f"token {TOKEN}"
    titles = {r.body["title"] for r in created}
    assert patch.title in titles
    assert {r.body["base"] for r in created} == {"main"}


def test_approve_merges_and_reject_closes_the_pull_request(forge_project, github, reviewer):
    api = APIClient()
    api.force_authenticate(reviewer)
    pyyaml = apv_of("pyyaml")
    approved = api.post(f"/api/v1/apvs/{pyyaml.code}/decisions/", {
        "decision": "approve", "justification": "Looks right to me, merge it.",
        "patch_revision": 1}, format="json").json()
    assert approved["action_taken"] == "pull_request_merged"
    merge = [r for r in github.requests if r.method == "PUT"][0]
    assert merge.body["sha"] == pyyaml.current_patch.commit_sha
    assert Patch.objects.get(pk=pyyaml.current_patch_id).state == "merged"

    jinja = apv_of("jinja2")
    closed = api.post(f"/api/v1/apvs/{jinja.code}/decisions/", {
        "decision": "reject", "justification": "Wrong fix, we pin via constraints.",
        "patch_revision": 1}, format="json").json()
    assert closed["action_taken"] == "pull_request_closed"
    assert [r.body for r in github.requests if r.method == "PATCH"] == [{"state": "closed"}]


def test_a_forge_error_is_recorded_and_nothing_moves(forge_project, github, reviewer):
    github.add("PUT", f"/repos/{REPOSITORY}/pulls/42/merge", 405,
               "pulls_merge_405_not_mergeable.json")
    api = APIClient()
    api.force_authenticate(reviewer)
    pyyaml = apv_of("pyyaml")
    body = api.post(f"/api/v1/apvs/{pyyaml.code}/decisions/", {
        "decision": "approve", "justification": "Looks right to me, merge it.",
        "patch_revision": 1}, format="json").json()
    assert body["action_taken"] == "approve_failed"
    assert "not mergeable" in body["action_error"] and TOKEN not in body["action_error"]
    assert apv_of("pyyaml").status == "pending_review"
