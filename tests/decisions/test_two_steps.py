"""Decisions in two steps (docs/patches-and-decisions.md, "Two steps"): recorded in one
transaction, acted on by a Celery task after commit, the outcome recorded; failures are
visible and retryable; a repeated or taken-over attempt acts once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from apps.decisions.apply import decision_apply, decisions_requeue_stale
from apps.decisions.models import Decision
from apps.decisions.services import decision_record
from apps.decisions.tasks import apply_decision
from apps.reviews.models import APV, Patch
from tests.decisions.conftest import apv_of
from tests.decisions.test_forge_flow import forge_project, github  # noqa: F401 (fixtures)
from tests.factories import commit_files, git
from tests.helpers import ROOT
from tests.reviews.test_forge_github import REPOSITORY

JUSTIFICATION = "Upgrade verified against the changelog."


def api_for(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def approve(user, apv, **extra):
    return api_for(user).post(f"/api/v1/apvs/{apv.code}/decisions/", {
        "decision": "approve", "justification": JUSTIFICATION,
        "patch_revision": apv.current_patch.revision, **extra}, format="json")


def merges(repo) -> list[str]:
    return git(repo, "rev-list", "--merges", "main").split()


def published_after_commit() -> int:
    """Callbacks waiting for the test's transaction to commit (it never does: the test
    rolls back, so what they would publish never reaches the broker)."""
    return len(connection.run_on_commit)


@pytest.fixture
def broker_queued():
    """Tasks go to the broker after commit, as with workers, and no worker runs them: the
    state between the two steps can be looked at."""
    from immune.celery import app

    previous = app.conf.task_always_eager
    app.conf.task_always_eager = False
    yield
    app.conf.task_always_eager = previous


@pytest.mark.redis
def test_the_decision_is_recorded_first_and_git_acts_after_commit(proposed, reviewer,
                                                                   broker_queued):
    django = APV.objects.filter(dependency__normalised_name="django").order_by("code")
    apv, siblings = django[0], list(django[1:])
    assert siblings, "the demo's Django patch covers several APVs"
    head = git(proposed.path, "rev-parse", "main").strip()

    response = approve(reviewer, apv)
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["outcome"] == "applying" and body["action_taken"] == ""
    assert body["status_after"] == "approved"
    assert sorted(body["also_applied_to"]) == sorted(a.code for a in siblings)
    # step one wrote the decision, its audit row and the APVs' claim; git is untouched
    decision = Decision.objects.get(pk=body["id"])
    assert sorted(decision.audit.snapshot["also_applied_to"]) == sorted(body["also_applied_to"])
    assert set(APV.objects.filter(pk__in=[apv.pk, *(s.pk for s in siblings)])
               .values_list("status", flat=True)) == {"approved"}
    assert git(proposed.path, "rev-parse", "main").strip() == head
    assert published_after_commit() >= 1  # the task is published only after commit
    # a second reviewer racing it is refused: the claim is held while git works
    again = approve(reviewer, APV.objects.get(pk=apv.pk))
    assert again.status_code == 409

    # step two, as the worker runs it
    assert apply_decision.apply(args=[decision.pk]).get() == "applied"
    decision.refresh_from_db()
    assert decision.outcome == "applied" and decision.action_taken == "merged"
    assert decision.status_after == "applied" and decision.apply_attempts == 1
    assert len(merges(proposed.path)) == 1
    assert set(APV.objects.filter(pk__in=[apv.pk, *(s.pk for s in siblings)])
               .values_list("status", flat=True)) == {"applied"}
    assert Patch.objects.get(pk=apv.current_patch_id).state == "merged"
    # the siblings' histories show the decision that moved them
    sibling_history = api_for(reviewer).get("/api/v1/decisions/?project=demo").json()
    assert sorted(sibling_history["results"][0]["also_applied_to"]) == sorted(
        body["also_applied_to"])

    # a redelivered task (or one requeued while this ran) acts no more
    assert decision_apply(decision_id=decision.pk) == "applied"
    assert len(merges(proposed.path)) == 1


@pytest.mark.redis
def test_an_attempt_that_died_is_taken_over_and_acting_twice_merges_once(
        proposed, reviewer, broker_queued):
    apv = apv_of("pyyaml")
    decision_id = approve(reviewer, apv).json()["id"]
    assert decisions_requeue_stale() == []  # just decided: its task is on its way
    later = timezone.now() + timedelta(minutes=5)
    # the first attempt merged, then its worker was killed before it recorded anything
    patch = apv.current_patch
    git(proposed.path, "merge", "--no-ff", "--no-edit", "-m", "merged by a dying worker",
        patch.branch)
    Decision.objects.filter(pk=decision_id).update(
        apply_started_at=timezone.now() - timedelta(hours=1), apply_attempts=1)
    # beat finds the stale lease and queues the decision again (published after commit)
    before = published_after_commit()
    assert decisions_requeue_stale(now=later) == [decision_id]
    assert published_after_commit() == before + 1
    # the new attempt finds the branch merged already: no second merge, recorded applied
    assert decision_apply(decision_id=decision_id) == "applied"
    assert len(merges(proposed.path)) == 1
    decision = Decision.objects.get(pk=decision_id)
    assert decision.apply_attempts == 2 and decision.action_taken == "merged"
    assert APV.objects.get(pk=apv.pk).status == "applied"


def test_without_a_broker_approve_is_503_and_nothing_is_recorded(proposed, reviewer,
                                                                 broker_queued, settings):
    """Step two is a task: with the broker unreachable an approval is refused before
    anything is written (503, Retry-After), while a decision with nothing for git to do
    is still recorded."""
    from tests.helpers import closed_port

    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{closed_port()}/0"
    apv = apv_of("pyyaml")
    refused = approve(reviewer, apv)
    assert refused.status_code == 503, refused.json()
    assert refused.json()["error"]["details"]["dependency"] == "broker"
    assert refused["Retry-After"]
    assert not Decision.objects.filter(apv=apv).exists()
    assert APV.objects.get(pk=apv.pk).status == "pending_review"
    escalated = api_for(reviewer).post(f"/api/v1/apvs/{apv.code}/decisions/", {
        "decision": "escalate", "justification": "Needs a lead to look at this one.",
        "patch_revision": apv.current_patch.revision}, format="json")
    assert escalated.status_code == 201, escalated.json()
    assert escalated.json()["outcome"] == "applied"


@pytest.mark.redis
def test_a_live_lease_keeps_a_second_attempt_out(proposed, reviewer, broker_queued):
    apv = apv_of("pyyaml")
    decision_id = approve(reviewer, apv).json()["id"]
    Decision.objects.filter(pk=decision_id).update(apply_started_at=timezone.now())
    assert decision_apply(decision_id=decision_id) == "applying"  # another worker has it
    assert merges(proposed.path) == []
    assert decisions_requeue_stale(now=timezone.now() + timedelta(minutes=5)) == []


def test_a_failed_merge_is_visible_and_retryable(proposed, reviewer, lead):
    apv = apv_of("pyyaml")
    commit_files(proposed.path, {"requirements.txt": "PyYAML==6.0.1\n"},
                 message="someone else bumped it")
    body = approve(reviewer, apv).json()
    assert body["outcome"] == "apply_failed" and body["action_taken"] == "approve_failed"
    assert "conflict" in body["action_error"].lower()
    assert APV.objects.get(pk=apv.pk).status == "pending_review"
    decision = Decision.objects.get(pk=body["id"])
    assert decision.apply_log[-1]["outcome"] == "apply_failed"

    # shown in the console's history with a Retry button
    admin = APIClient()
    admin.force_login(reviewer)
    page = admin.get(f"/admin/reviews/apv/{apv.pk}/change/").content.decode()
    assert "approve_failed" in page and "Retry" in page

    # the conflict is settled (the other bump reverted), then the retry merges
    git(proposed.path, "revert", "--no-edit", "HEAD")
    retried = api_for(reviewer).post(f"/api/v1/decisions/{decision.pk}/retry/")
    assert retried.status_code == 202, retried.json()
    assert retried.json()["outcome"] == "applied"
    assert retried.json()["action_taken"] == "merged"
    assert APV.objects.get(pk=apv.pk).status == "applied"
    assert len(merges(proposed.path)) == 1
    assert Decision.objects.filter(apv=apv).count() == 1  # one decision, tried twice
    assert Decision.objects.get(pk=decision.pk).apply_log[-2]["retried_by"] == "rita"
    # only a failed decision is retried
    assert api_for(reviewer).post(f"/api/v1/decisions/{decision.pk}/retry/").status_code == 409


def test_a_retry_is_refused_once_the_apv_moved_on(proposed, reviewer):
    apv = apv_of("pyyaml")
    commit_files(proposed.path, {"requirements.txt": "PyYAML==6.0.1\n"}, message="bump")
    failed = approve(reviewer, apv).json()
    assert failed["outcome"] == "apply_failed"
    # someone decided the APV differently meanwhile
    assert api_for(reviewer).post(f"/api/v1/apvs/{apv.code}/decisions/", {
        "decision": "false_positive", "justification": "We never import the yaml loader.",
        "patch_revision": 1}, format="json").status_code == 201
    refused = api_for(reviewer).post(f"/api/v1/decisions/{failed['id']}/retry/")
    assert refused.status_code == 409 and "moved" in refused.json()["error"]["message"]
    assert APV.objects.get(pk=apv.pk).status == "false_positive"
    assert api_for(reviewer).post("/api/v1/decisions/999999/retry/").status_code == 404


def test_a_forge_outage_is_retried_then_recorded_and_the_retry_merges(
        forge_project, github, reviewer, settings):  # noqa: F811 (fixtures)
    github.add("PUT", f"/repos/{REPOSITORY}/pulls/42/merge", 502, data={"message": "bad gw"})
    pyyaml = apv_of("pyyaml")
    body = approve(reviewer, pyyaml).json()
    puts = [r for r in github.requests if r.method == "PUT"]
    assert body["outcome"] == "apply_failed"
    assert len(puts) >= 2, "a 502 is transient: the task tried again before giving up"
    decision = Decision.objects.get(pk=body["id"])
    assert decision.apply_attempts == apply_decision.max_retries + 1
    assert apv_of("pyyaml").status == "pending_review"

    from apps.core.breakers import BREAKERS

    BREAKERS["forge"].reset()  # the forge came back (its breaker's reset timeout passed)
    github.add("PUT", f"/repos/{REPOSITORY}/pulls/42/merge", 200, "pulls_merge_200.json")
    retried = api_for(reviewer).post(f"/api/v1/decisions/{decision.pk}/retry/").json()
    assert retried["outcome"] == "applied"
    assert retried["action_taken"] == "pull_request_merged"


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_applies_the_decision_after_commit(proposed_tx, reviewer):
    """With a broker and a worker process: the request answers ``applying`` and the
    worker merges; the decision ends ``applied``."""
    from immune.celery import app

    queue = f"immune-test-{uuid.uuid4().hex[:8]}"
    db = connection.settings_dict
    env = {**os.environ,
           "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
           "CELERY_TASK_ALWAYS_EAGER": "false"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "immune", "worker", "--pool", "solo",
         "-Q", queue, "--without-heartbeat", "--without-gossip", "--without-mingle",
         "-l", "warning"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    previous = app.conf.task_always_eager, app.conf.task_default_queue
    app.conf.task_always_eager, app.conf.task_default_queue = False, queue
    try:
        apv = apv_of("pyyaml")
        result = decision_record(apv_code=apv.code, reviewer=reviewer, decision="approve",
                                 justification=JUSTIFICATION,
                                 patch_revision=apv.current_patch.revision)
        assert result.decision.outcome in ("applying", "applied")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            decision = Decision.objects.get(pk=result.decision.pk)
            if decision.outcome != "applying":
                break
            time.sleep(0.2)
        assert decision.outcome == "applied", decision.action_error
        assert decision.action_taken == "merged"
        assert APV.objects.get(pk=apv.pk).status == "applied"
        assert len(merges(proposed_tx.path)) == 1
    finally:
        app.conf.task_always_eager, app.conf.task_default_queue = previous
        worker.terminate()
        output = worker.communicate(timeout=30)[0]
        connection.close()
    assert "Traceback" not in output, output
