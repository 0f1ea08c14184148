"""Step two of a decision: git and the forge act, after the decision committed.

``decision_dispatch`` queues ``decisions.apply`` for a decision left ``applying`` by step
one. ``decision_apply`` (the task's body) takes a lease on the decision, so two workers
never act on one decision at once; runs the action holding no database lock (a slow forge
holds nothing); then, in one transaction, records the outcome on the decision and moves its
APVs: ``applied`` (a merge: the APVs are ``applied``, the patch ``merged``; a rejection:
the branch is gone, the patch ``closed``), or ``apply_failed`` with the reason, the APVs
back where they were before the decision. Transient failures (the forge down or its
breaker open, another git process holding the repository) are retried by the task with
backoff; the last attempt records them as ``apply_failed``.

Acting twice is harmless: a merge of a branch already on the target is a no-op that
answers the target's head, and deleting a branch that is gone succeeds. So a worker that
dies between the action and the record is simply replaced: the lease runs out and
``decisions_requeue_stale`` (beat, every minute) queues the decision again.
"""

from __future__ import annotations

from datetime import timedelta

import structlog
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from apps.core.queue import enqueue, enqueue_on_commit, tasks_run_in_process
from apps.core.realtime import send_event_on_commit
from apps.decisions.events import decision_payload
from apps.decisions.models import Decision, DecisionType, Outcome
from apps.inventory.git import GitError
from apps.reviews.models import APVStatus
from apps.reviews.patching.branches import branch_exists, delete_branch, merge_branch
from apps.reviews.services.decided import apvs_move_from, patch_closed, patch_merged

log = structlog.get_logger(__name__)

#: Git's own lock files: another git process is writing the repository. Worth a retry.
GIT_BUSY_MARKERS = ("index.lock", "Unable to create", "cannot lock ref")


class ApplyRetryable(Exception):
    """The action could not run now but may later (the task retries it)."""


class DecisionNotVisible(ApplyRetryable):
    """The task ran before the decision's transaction committed."""


class _ActionFailed(Exception):
    pass


def decision_dispatch(decision_id: int) -> None:
    """Queue step two. On the embedded profile (tasks run in-process) it runs now, in the
    caller's transaction if there is one; with a broker it is published after commit, and
    a broker failure leaves the decision ``applying`` for the requeue beat."""
    from apps.decisions.tasks import apply_decision

    if tasks_run_in_process():
        enqueue(apply_decision, decision_id)
    else:
        enqueue_on_commit(apply_decision, decision_id)


def _take_lease(decision_id: int, now) -> bool:
    expired = now - timedelta(seconds=settings.DECISION_APPLY_LEASE_S)
    return Decision.objects.filter(
        Q(apply_started_at__isnull=True) | Q(apply_started_at__lt=expired),
        pk=decision_id, outcome=Outcome.APPLYING,
    ).update(apply_started_at=now, apply_attempts=F("apply_attempts") + 1) == 1


def decision_apply(*, decision_id: int, last_attempt: bool = False) -> str:
    """Carry out a decision ``applying``; returns its outcome. Raises ApplyRetryable for a
    failure worth retrying, unless ``last_attempt`` (then it is recorded as failed)."""
    started = timezone.now()
    if not _take_lease(decision_id, started):
        outcome = Decision.objects.filter(pk=decision_id).values_list("outcome", flat=True)
        if not outcome:
            raise DecisionNotVisible(f"decision {decision_id} is not committed yet")
        return outcome[0]  # done already, or another attempt holds the lease
    decision = Decision.objects.select_related(
        "apv__project", "patch", "reviewer").get(pk=decision_id)
    action, merge_commit, error = "", "", ""
    try:
        action, merge_commit = _act(decision)
    except ApplyRetryable as exc:
        if not last_attempt:
            Decision.objects.filter(pk=decision_id).update(apply_started_at=None)
            log.warning("decision.apply_retry", decision=decision_id, error=str(exc)[:500])
            raise
        error = str(exc)
    except _ActionFailed as exc:
        error = str(exc)
    return _record(decision_id, action=action, merge_commit=merge_commit,
                   error=error[:4000], started=started)


def _act(decision: Decision) -> tuple[str, str]:
    """(action_taken, merge_commit) of the decision's action, or an exception."""
    try:
        if decision.decision == DecisionType.APPROVE:
            return _approve(decision)
        return _reject(decision), ""
    except GitError as exc:
        if any(marker in str(exc) for marker in GIT_BUSY_MARKERS):
            raise ApplyRetryable(str(exc)) from exc
        raise _ActionFailed(str(exc)) from exc


def _forge_call(fn, **kwargs):
    from apps.core.breakers import CircuitBreakerError
    from apps.reviews.forge.github import ForgeError

    try:
        return fn(**kwargs)
    except CircuitBreakerError as exc:
        raise ApplyRetryable(f"the forge is unavailable (circuit open): {exc}") from exc
    except ForgeError as exc:
        if exc.status is None or exc.status >= 500 or exc.status == 429:
            raise ApplyRetryable(str(exc)) from exc
        raise _ActionFailed(str(exc)) from exc
    except Exception as exc:  # a forge client's own bug must still end the decision
        raise _ActionFailed(f"{type(exc).__name__}: {exc}") from exc


def _approve(decision: Decision) -> tuple[str, str]:
    from apps.reviews.forge.adapter import github_forge_for

    apv, patch = decision.apv, decision.patch
    message = (f"Merge {patch.branch}: {patch.title}\n\nApproved by "
               f"{decision.reviewer.get_username()} ({apv.code}): {decision.justification}")
    forge = github_forge_for(apv.project) if patch.forge_pr_number else None
    if forge is not None:
        merged = _forge_call(forge.merge_pull_request, number=patch.forge_pr_number,
                             expected_head_sha=patch.commit_sha,
                             commit_title=message.splitlines()[0])
        return "pull_request_merged", merged
    merged = merge_branch(repo=apv.project.path, target=apv.project.default_branch,
                          branch=patch.branch, message=message)
    return "merged", merged


def _reject(decision: Decision) -> str:
    from apps.reviews.forge.adapter import github_forge_for

    apv, patch = decision.apv, decision.patch
    forge = github_forge_for(apv.project) if patch.forge_pr_number else None
    if forge is not None:
        _forge_call(forge.close_pull_request, number=patch.forge_pr_number, branch=patch.branch)
    if branch_exists(apv.project.path, patch.branch):  # gone already: a repeated attempt
        delete_branch(repo=apv.project.path, branch=patch.branch)
    return "pull_request_closed" if forge else "branch_deleted"


@transaction.atomic
def _record(decision_id: int, *, action: str, merge_commit: str, error: str,
            started) -> str:
    decision = (Decision.objects.select_for_update(of=("self",))
                .select_related("apv", "patch", "reviewer").get(pk=decision_id))
    if decision.outcome != Outcome.APPLYING:
        return decision.outcome
    now = timezone.now()
    apv_ids = [decision.apv_id, *decision.also_applied_to.values_list("pk", flat=True)]
    claimed = decision.status_after
    if error:
        decision.outcome = Outcome.APPLY_FAILED
        decision.action_taken = f"{decision.decision}_failed"
        decision.action_error = error
        decision.status_after = decision.status_before
        apvs_move_from(apv_ids=apv_ids, patch=decision.patch, status=claimed,
                       to=decision.status_before)
    else:
        decision.outcome, decision.action_taken, decision.applied_at = (
            Outcome.APPLIED, action, now)
        if decision.decision == DecisionType.APPROVE:
            patch_merged(patch=decision.patch, merge_commit=merge_commit)
            # approved → applied: the fix is on the default branch; a rescan resolves it.
            decision.status_after = APVStatus.APPLIED
            apvs_move_from(apv_ids=apv_ids, patch=decision.patch, status=claimed,
                           to=APVStatus.APPLIED)
        else:
            patch_closed(patch=decision.patch)
    decision.apply_started_at = None
    decision.apply_log = [*decision.apply_log, {
        "attempt": decision.apply_attempts, "started_at": started.isoformat(),
        "ended_at": now.isoformat(), "outcome": decision.outcome, "error": error[:500]}]
    decision.save(update_fields=["outcome", "action_taken", "action_error", "status_after",
                                 "applied_at", "apply_started_at", "apply_log"])
    send_event_on_commit("decisions", "decision.applied", decision_payload(decision))
    log.info("decision.applied" if not error else "decision.apply_failed",
             decision=decision.pk, apv=decision.apv.code, action=decision.action_taken,
             attempts=decision.apply_attempts)
    return decision.outcome


def decisions_requeue_stale(*, now=None) -> list[int]:
    """Beat: decisions still ``applying`` whose task never ran (the broker was down at
    commit) or whose worker died (the lease ran out) are queued again."""
    now = now or timezone.now()
    lease = timedelta(seconds=settings.DECISION_APPLY_LEASE_S)
    grace = timedelta(seconds=settings.DECISION_REQUEUE_AFTER_S)
    stale = list(Decision.objects.filter(outcome=Outcome.APPLYING).filter(
        Q(apply_started_at__isnull=True, decided_at__lt=now - grace)
        | Q(apply_started_at__lt=now - lease)).values_list("pk", flat=True))
    for pk in stale:
        decision_dispatch(pk)
    if stale:
        log.warning("decision.requeued", decisions=stale)
    return stale
