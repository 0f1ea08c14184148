"""Decisions end to end on a real git repository: merge, delete, 409s, audit, events."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from apps.decisions.models import Decision, DecisionAudit
from apps.decisions.services import decision_record, risk_acceptances_expire
from apps.reviews.models import APV, Patch
from tests.decisions.conftest import apv_of
from tests.factories import commit_files, git

JUSTIFICATION = "Upgrade verified against the changelog."


def client_for(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def decide(client, apv, decision="approve", **extra):
    body = {"decision": decision, "justification": JUSTIFICATION,
            "patch_revision": apv.current_patch.revision if apv.current_patch else None, **extra}
    return client.post(f"/api/v1/apvs/{apv.code}/decisions/", body, format="json",
                       HTTP_USER_AGENT="pytest-agent/1.0", **extra.pop("headers", {}))


def test_proposals_put_each_package_on_its_own_branch(proposed):
    pyyaml = apv_of("pyyaml")
    patch = pyyaml.current_patch
    assert pyyaml.status == "pending_review"
    assert patch.strategy == "dependency_upgrade" and patch.target_version == "5.4"
    assert patch.branch == f"immune/{pyyaml.code}-r1" and patch.revision == 1
    assert "-PyYAML==5.3.1" in patch.diff and "+PyYAML==5.4" in patch.diff
    repo = proposed.path
    assert git_branch_file(repo, patch.branch, "requirements.txt").count("PyYAML==5.4") == 1
    # the default branch and the checked-out files are untouched
    assert "PyYAML==5.3.1" in git_branch_file(repo, "main", "requirements.txt")
    assert git(repo, "status", "--porcelain").strip() == ""
    django_apvs = APV.objects.filter(dependency__normalised_name="django")
    assert {a.current_patch_id for a in django_apvs} == {django_apvs[0].current_patch_id}


def git_branch_file(repo, branch, path):
    return git(repo, "show", f"{branch}:{path}")


def test_approve_merges_the_upgrade_and_reject_deletes_the_branch(proposed, reviewer):
    api = client_for(reviewer)
    pyyaml = apv_of("pyyaml")
    response = decide(api, pyyaml, "approve")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["action_taken"] == "merged" and body["status_after"] == "applied"
    log = git(proposed.path, "log", "--first-parent", "-1", "--format=%P%n%s", "main")
    parents, subject = log.splitlines()
    assert len(parents.split()) == 2  # a real merge commit
    assert subject.startswith(f"Merge {pyyaml.current_patch.branch}")
    assert "PyYAML==5.4" in git_branch_file(proposed.path, "main", "requirements.txt")
    assert Patch.objects.get(pk=pyyaml.current_patch_id).state == "merged"

    jinja = apv_of("jinja2")
    branch = jinja.current_patch.branch
    rejected = decide(api, jinja, "reject").json()
    assert rejected["action_taken"] == "branch_deleted"
    assert branch not in git(proposed.path, "branch", "--list", branch)
    assert APV.objects.get(pk=jinja.pk).status == "rejected"


def test_merge_conflict_leaves_pending_review_and_the_repository_clean(proposed, reviewer):
    pyyaml = apv_of("pyyaml")
    head = commit_files(proposed.path, {"requirements.txt": "PyYAML==6.0.1\n"},
                        message="someone else bumped it")
    response = decide(client_for(reviewer), pyyaml, "approve")
    assert response.status_code == 201
    body = response.json()
    assert body["action_taken"] == "approve_failed"
    assert "CONFLICT" in body["action_error"] or "conflict" in body["action_error"].lower()
    assert APV.objects.get(pk=pyyaml.pk).status == "pending_review"
    assert git(proposed.path, "rev-parse", "HEAD").strip() == head
    assert git(proposed.path, "status", "--porcelain").strip() == ""
    assert not (proposed.path and __import__("pathlib").Path(proposed.path, ".git",
                                                                "MERGE_HEAD").exists())


def test_decision_is_audited_with_what_was_shown(proposed, reviewer):
    apv = apv_of("urllib3")
    response = decide(client_for(reviewer), apv, "escalate", headers={"REMOTE_ADDR": "10.1.2.3"})
    assert response.status_code == 201
    decision = Decision.objects.get(pk=response.json()["id"])
    audit = DecisionAudit.objects.get(decision=decision)
    assert audit.reviewer_username == "rita" and audit.user_agent == "pytest-agent/1.0"
    assert audit.client_ip == "10.1.2.3" and audit.via == "api"
    assert audit.snapshot["advisory"]["id"] == apv.advisory.osv_id
    assert audit.snapshot["patch"]["revision"] == 1
    assert "+urllib3==" in audit.snapshot["patch"]["diff"]
    assert audit.snapshot["wargame_verdict"] is None
    apv.refresh_from_db()
    assert apv.status == "escalated" and apv.assigned_group.name == "leads"


def test_permissions_anonymous_reviewer_and_lead(proposed, reviewer, lead, django_user_model):
    apv = apv_of("urllib3")
    assert decide(APIClient(), apv).status_code == 401
    nobody = django_user_model.objects.create_user("nobody", password="x" * 12)
    assert decide(client_for(nobody), apv).status_code == 403
    assert decide(client_for(reviewer), apv, "accept_risk",
                  expires_at=(timezone.now() + timedelta(days=30)).isoformat()).status_code \
        == 403
    assert decide(client_for(reviewer), apv, "escalate").status_code == 201
    apv.refresh_from_db()
    forbidden = decide(client_for(reviewer), apv, "approve")
    assert forbidden.status_code == 403
    assert "only leads" in forbidden.json()["error"]["message"]
    assert decide(client_for(lead), apv, "reject").status_code == 201


@pytest.mark.parametrize(("body", "field"), [
    ({"decision": "approve", "justification": "too short"}, "justification"),
    ({"decision": "modify", "justification": JUSTIFICATION}, "modifications"),
    ({"decision": "merge_it", "justification": JUSTIFICATION}, "decision"),
    ({"decision": "accept_risk", "justification": JUSTIFICATION}, "expires_at"),
    ({"decision": "approve", "justification": JUSTIFICATION, "confidence": 1.5}, "confidence"),
])
def test_invalid_decisions_are_400_with_field_details(proposed, reviewer, body, field):
    apv = apv_of("urllib3")
    response = client_for(reviewer).post(f"/api/v1/apvs/{apv.code}/decisions/", body,
                                         format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error" and field in error["details"]
    assert Decision.objects.count() == 0


def test_stale_revision_and_decided_meanwhile_are_409(proposed, reviewer):
    apv = apv_of("urllib3")
    stale = decide(client_for(reviewer), apv, patch_revision=7)
    assert stale.status_code == 409
    assert stale.json()["error"]["details"]["current_revision"] == 1
    assert decide(client_for(reviewer), apv, "false_positive").status_code == 201
    again = decide(client_for(reviewer), apv, "approve")
    assert again.status_code == 409 and "false_positive" in again.json()["error"]["message"]
    assert Decision.objects.filter(apv=apv).count() == 1


def test_idempotency_key_returns_the_first_result(proposed, reviewer):
    apv = apv_of("pyyaml")
    api = client_for(reviewer)
    headers = {"HTTP_IDEMPOTENCY_KEY": "retry-abc-1"}
    first = decide(api, apv, "approve", headers=headers)
    second = decide(api, apv, "approve", headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second["Idempotent-Replayed"] == "true"
    assert Decision.objects.count() == 1
    merges = git(proposed.path, "rev-list", "--merges", "main").split()
    assert len(merges) == 1


def test_modify_then_a_new_revision_can_be_decided(proposed, reviewer):
    apv = apv_of("pyyaml")
    api = client_for(reviewer)
    response = decide(api, apv, "modify", modifications="Go straight to 6.0.1 please.")
    assert response.json()["status_after"] == "changes_requested"
    created = api.post("/api/v1/patches/", {"apv": apv.code, "strategy": "dependency_upgrade",
                                            "target_version": "6.0.1"}, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["revision"] == 2
    assert created.json()["branch"] == f"immune/{apv.code}-r2"
    apv.refresh_from_db()
    assert apv.status == "pending_review" and apv.current_patch.revision == 2
    assert Patch.objects.get(revision=1, apvs=apv).state == "superseded"
    assert decide(api, apv, "approve", patch_revision=1).status_code == 409
    assert decide(api, apv, "approve").json()["action_taken"] == "merged"


def test_accept_risk_expires_back_to_pending_review(proposed, lead):
    apv = apv_of("urllib3")
    expires = timezone.now() + timedelta(days=1)
    response = decide(client_for(lead), apv, "accept_risk", expires_at=expires.isoformat())
    assert response.json()["status_after"] == "risk_accepted"
    assert risk_acceptances_expire() == []
    assert risk_acceptances_expire(now=expires + timedelta(seconds=1)) == [apv.code]
    assert APV.objects.get(pk=apv.pk).status == "pending_review"


def test_history_list_filters_and_stats(proposed, reviewer, lead):
    api = client_for(reviewer)
    decide(api, apv_of("pyyaml"), "approve")
    decide(api, apv_of("jinja2"), "reject")
    history = api.get(f"/api/v1/apvs/{apv_of('pyyaml').code}/decisions/").json()
    assert [d["decision"] for d in history["results"]] == ["approve"]
    rejects = api.get("/api/v1/decisions/", {"decision": "reject"}).json()
    assert rejects["count"] == 1 and rejects["results"][0]["reviewer"] == "rita"
    assert api.get("/api/v1/decisions/", {"reviewer": "leo"}).json()["count"] == 0
    today = timezone.now().date().isoformat()
    assert api.get("/api/v1/decisions/", {"since": today}).json()["count"] == 2
    assert api.get("/api/v1/decisions/", {"until": today}).json()["count"] == 0
    stats = api.get("/api/v1/apvs/stats/").json()
    assert stats["decisions_by_type"] == {"approve": 1, "reject": 1}
    times = stats["review_time_seconds"]
    assert times["count"] == 2 and times["fastest"] <= times["median"] <= times["slowest"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_decisions_one_wins_one_merge(proposed_tx, reviewer):
    """Six threads approve the same APV at once on PostgreSQL: one decision, one merge."""
    apv = apv_of("pyyaml")
    barrier = threading.Barrier(6)
    outcomes = []

    def attempt():
        barrier.wait()
        try:
            result = decision_record(apv_code=apv.code, reviewer=reviewer, decision="approve",
                                     justification=JUSTIFICATION,
                                     patch_revision=apv.current_patch.revision)
            outcomes.append(("ok", result.decision.action_taken))
        except Exception as exc:
            outcomes.append((getattr(exc, "status_code", 500), type(exc).__name__))
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes, key=str) == sorted(
        [("ok", "merged")] + [(409, "DecisionConflict")] * 5, key=str)
    assert Decision.objects.filter(apv=apv).count() == 1
    assert len(git(proposed_tx.path, "rev-list", "--merges", "main").split()) == 1


def test_code_patch_is_checked_with_git_apply(proposed, reviewer):
    apv = apv_of("pyyaml")
    api = client_for(reviewer)
    good = ("--- a/app.py\n+++ b/app.py\n@@ -5,4 +5,4 @@ import yaml\n \n \n"
            " def load_settings(text: str) -> dict:\n"
            "-    return yaml.full_load(text)\n+    return yaml.safe_load(text)\n")
    bad = good.replace("full_load", "unsafe_load")
    refused = api.post("/api/v1/patches/", {"apv": apv.code, "strategy": "code_patch",
                                            "diff": bad}, format="json")
    assert refused.status_code == 400
    assert "patch does not apply" in refused.json()["error"]["message"]
    created = api.post("/api/v1/patches/", {"apv": apv.code, "strategy": "code_patch",
                                            "diff": good}, format="json")
    assert created.status_code == 201, created.json()
    patch = created.json()
    assert patch["strategy"] == "code_patch" and patch["revision"] == 2
    assert "safe_load" in git(proposed.path, "show", f"{patch['branch']}:app.py")
    assert "full_load" in git(proposed.path, "show", "main:app.py")


def test_admin_code_patch_form_reports_gits_message(proposed, admin_client):
    apv = apv_of("pyyaml")
    page = admin_client.post("/admin/reviews/patch/add/", {
        "apv": apv.pk, "title": "x", "diff": "--- a/nope.py\n+++ b/nope.py\n@@ -1 +1 @@\n-a\n+b\n"})
    assert page.status_code == 200
    assert "nope.py" in page.content.decode()
    assert not Patch.objects.filter(strategy="code_patch", title="x").exists()


def test_idempotency_key_longer_than_can_be_stored_is_400(proposed, reviewer):
    """Cut to 200 characters, two keys would be one: refused instead."""
    response = decide(client_for(reviewer), apv_of("pyyaml"), "approve",
                      headers={"HTTP_IDEMPOTENCY_KEY": "k" * 201})
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["error"]["details"]
    assert not Decision.objects.exists()
