"""``decision_record``: a reviewer's verdict on an APV's patch revision, acted on.

Exactly once: the APV row is locked (PostgreSQL) and claimed with a conditional UPDATE on
its status and patch (every database), so of several concurrent decisions one wins and the
others answer 409 and write nothing. The action (merge, branch deletion, pull request) runs
while the claim is held and its outcome is stored on the decision in the same transaction;
a failed action (a merge conflict) leaves the APV where it was, with the failure recorded.
Live events go out after commit.

Idempotency (docs/patches-and-decisions.md): requests of one reviewer with one
``Idempotency-Key`` run one at a time (a transaction-level advisory lock on the key on
PostgreSQL; SQLite's transactions begin IMMEDIATE, holding its one write lock), so the
first decides and the others, once it commits, replay its decision; the key is stored
with a fingerprint of the request, and a key sent with another request is refused (422).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

import structlog
from django.contrib.auth.models import Group
from django.db import IntegrityError, OperationalError, connection, transaction
from django.utils import timezone

from apps.core.realtime import send_event_on_commit
from apps.core.roles import LEADS
from apps.decisions.errors import (
    DecisionConflict,
    DecisionForbidden,
    DecisionInvalid,
    IdempotencyKeyInProgress,
    IdempotencyKeyReused,
)
from apps.decisions.events import DecisionContext, apv_snapshot, decision_audit_record
from apps.decisions.models import Decision, DecisionType
from apps.inventory.git import GitError
from apps.reviews.errors import APVNotFound
from apps.reviews.models import APV, APVStatus, Patch, PatchState
from apps.reviews.patching.branches import delete_branch, merge_branch
from apps.reviews.services.apvs import apv_payload, stats_push_on_commit

log = structlog.get_logger(__name__)

MIN_JUSTIFICATION = 10
#: How long a request waits for the request first sent with its Idempotency-Key to finish
#: (PostgreSQL; on SQLite the database's busy timeout bounds the wait).
IDEMPOTENCY_WAIT_S = 30
#: The first key of the advisory locks on Idempotency-Keys (the second is the key's hash).
IDEMPOTENCY_LOCK_SPACE = 13_001
LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE for a lock_timeout

#: Decisions that judge the patch (they apply to every APV the patch covers) ...
PATCH_DECISIONS = {DecisionType.APPROVE, DecisionType.REJECT, DecisionType.MODIFY,
                   DecisionType.ESCALATE}
#: ... and the status each decision leads to when its action succeeds.
STATUS_AFTER = {
    DecisionType.APPROVE: APVStatus.APPROVED,
    DecisionType.REJECT: APVStatus.REJECTED,
    DecisionType.MODIFY: APVStatus.CHANGES_REQUESTED,
    DecisionType.ESCALATE: APVStatus.ESCALATED,
    DecisionType.ACCEPT_RISK: APVStatus.RISK_ACCEPTED,
    DecisionType.FALSE_POSITIVE: APVStatus.FALSE_POSITIVE,
}


@dataclass
class DecisionResult:
    decision: Decision
    replayed: bool = False  # an Idempotency-Key retry: the first result, nothing new written


def _validate(*, decision: str, justification: str, confidence: float, modifications: str,
              expires_at: datetime | None) -> None:
    problems: dict[str, str] = {}
    if decision not in DecisionType.values:
        problems["decision"] = f"must be one of {', '.join(DecisionType.values)}"
    if len((justification or "").strip()) < MIN_JUSTIFICATION:
        problems["justification"] = f"at least {MIN_JUSTIFICATION} characters"
    if not 0 <= confidence <= 1:
        problems["confidence"] = "between 0 and 1"
    if decision == DecisionType.MODIFY and not (modifications or "").strip():
        problems["modifications"] = "required for modify: say what should change"
    if decision == DecisionType.ACCEPT_RISK:
        if expires_at is None:
            problems["expires_at"] = "required for accept_risk"
        elif expires_at <= timezone.now():
            problems["expires_at"] = "must be in the future"
    if problems:
        raise DecisionInvalid("The decision is not valid.", details=problems)


def decision_denial(user, apv: APV, decision: str) -> Exception | None:
    """Why ``user`` may not make ``decision`` on ``apv`` now (None when they may).

    The one place the rules live: the service enforces them, the console asks them to
    show only the buttons a reviewer can use.
    """
    if apv.status == APVStatus.ESCALATED:
        if not user.has_perm("decisions.decide_escalated"):
            return DecisionForbidden(f"{apv.code} is escalated: only leads decide it.")
        if decision == DecisionType.ESCALATE:
            return DecisionConflict(f"{apv.code} is already escalated.")
    elif apv.status == APVStatus.PENDING_REVIEW:
        if not user.has_perm("decisions.add_decision"):
            return DecisionForbidden("Deciding APVs needs the reviewer role.")
    else:
        return DecisionConflict(
            f"{apv.code} is {apv.status}, not awaiting a decision (decided meanwhile?).",
            details={"status": apv.status})
    if decision == DecisionType.ACCEPT_RISK and not user.has_perm("decisions.accept_risk"):
        return DecisionForbidden("Only leads may accept a risk.")
    return None


def decisions_allowed(user, apv: APV) -> list[str]:
    return [d for d in DecisionType.values if decision_denial(user, apv, d) is None]


def _check_permission(user, apv: APV, decision: str) -> None:
    if (denial := decision_denial(user, apv, decision)) is not None:
        raise denial


def _fingerprint(**request) -> str:
    """What a keyed request asked, hashed: the same key must come with the same request."""
    canonical = json.dumps(request, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _replay(reviewer, key: str, fingerprint: str) -> DecisionResult | None:
    """The decision made first with ``key``, if any; refused if it answered another request.

    Decisions stored before fingerprints existed (an empty one) are replayed unchecked."""
    first = (Decision.objects.select_related("apv__project", "reviewer")
             .filter(reviewer=reviewer, idempotency_key=key).first())
    if first is None:
        return None
    if first.idempotency_fingerprint and first.idempotency_fingerprint != fingerprint:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was already used with a different request; send a new "
            "key for a new decision.",
            details={"idempotency_key": key, "apv": first.apv.code, "decision_id": first.pk})
    return DecisionResult(first, replayed=True)


def _hold_key(reviewer, key: str) -> None:
    """Wait (bounded) until no other transaction holds this reviewer's key, then hold it
    until this transaction ends. PostgreSQL: an advisory lock; SQLite needs none, its
    transactions begin IMMEDIATE (settings), so one writer at a time already."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('lock_timeout')")
        (previous,) = cursor.fetchone()
        cursor.execute("SELECT set_config('lock_timeout', %s, true)",
                       [f"{IDEMPOTENCY_WAIT_S * 1000}ms"])
        try:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                           [IDEMPOTENCY_LOCK_SPACE, f"{reviewer.pk}:{key}"])
        except OperationalError as exc:
            if getattr(exc.__cause__, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                raise  # the database itself failed: 503, like any other request
            # lock_timeout: the request first sent with the key is still running
            raise IdempotencyKeyInProgress(
                f"A request with this Idempotency-Key is still being processed after "
                f"{IDEMPOTENCY_WAIT_S} s; retry it later.",
                details={"idempotency_key": key}) from exc
        cursor.execute("SELECT set_config('lock_timeout', %s, true)", [previous])


def decision_record(
    *, apv_code: str, reviewer, decision: str, justification: str, confidence: float = 1.0,
    modifications: str = "", patch_revision: int | None = None,
    expires_at: datetime | None = None, idempotency_key: str | None = None,
    context: DecisionContext | None = None,
) -> DecisionResult:
    context = context or DecisionContext()
    key = idempotency_key or None
    fingerprint = _fingerprint(
        apv=apv_code, decision=decision, justification=justification, confidence=confidence,
        modifications=modifications, patch_revision=patch_revision,
        expires_at=expires_at.isoformat() if expires_at else None) if key else ""
    if key and (first := _replay(reviewer, key, fingerprint)) is not None:
        return first  # the key's request finished before this one came
    _validate(decision=decision, justification=justification, confidence=confidence,
              modifications=modifications, expires_at=expires_at)
    try:
        with transaction.atomic():
            if key:
                _hold_key(reviewer, key)
                if (first := _replay(reviewer, key, fingerprint)) is not None:
                    return first  # it ran while this one waited for the key
            return DecisionResult(_decide(
                apv_code=apv_code, reviewer=reviewer, decision=decision,
                justification=justification.strip(), confidence=confidence,
                modifications=modifications.strip(), patch_revision=patch_revision,
                expires_at=expires_at, idempotency_key=key,
                idempotency_fingerprint=fingerprint, context=context))
    except IntegrityError:
        # The key raced itself past the lock (a SQLite configured without IMMEDIATE
        # transactions): the unique constraint kept one decision; it is the answer.
        if key and (first := _replay(reviewer, key, fingerprint)) is not None:
            return first
        raise


@transaction.atomic
def _decide(*, apv_code, reviewer, decision, justification, confidence, modifications,
            patch_revision, expires_at, idempotency_key, idempotency_fingerprint,
            context) -> Decision:
    apv = (APV.objects.select_for_update(of=("self",))
           .select_related("project", "dependency", "advisory", "current_patch")
           .filter(code=apv_code).first())
    if apv is None:
        raise APVNotFound(f"No APV {apv_code}.")
    _check_permission(reviewer, apv, decision)
    patch = apv.current_patch
    if patch is not None and patch_revision != patch.revision:
        raise DecisionConflict(
            f"{apv.code}'s patch is at revision {patch.revision}; you saw "
            f"{patch_revision}. Reload and decide on the current revision.",
            details={"current_revision": patch.revision, "patch_revision": patch_revision})
    status_before = apv.status
    # The claim: only one decision can move the APV off the status it was read in.
    claimed = APV.objects.filter(pk=apv.pk, status=status_before,
                                 current_patch=patch).update(status=STATUS_AFTER[decision])
    if claimed != 1:
        raise DecisionConflict(f"{apv.code} was decided meanwhile.")

    now = timezone.now()
    snapshot = apv_snapshot(apv)
    siblings = _siblings(apv, patch, decision, status_before)
    action, error, status_after = _act(decision, apv, patch, reviewer, justification)
    if error:
        status_after = status_before  # nothing happened: the APV stays where it was
    apv.status = status_after
    update = {"status": status_after, "updated_at": now}
    if status_after == APVStatus.ESCALATED:
        update["assigned_group"] = Group.objects.filter(name=LEADS).first()
    if status_after == APVStatus.RISK_ACCEPTED:
        update["risk_accepted_until"] = expires_at
    if status_after == APVStatus.CHANGES_REQUESTED:
        update["pending_review_at"] = None
    affected = [apv, *siblings] if not error else [apv]
    APV.objects.filter(pk__in=[a.pk for a in affected]).update(**update)

    record = Decision.objects.create(
        apv=apv, patch=patch, patch_revision=patch.revision if patch else None,
        decision=decision, justification=justification, confidence=confidence,
        modifications=modifications, expires_at=expires_at, reviewer=reviewer,
        decided_at=now, action_taken=action, action_error=error,
        status_before=status_before, status_after=status_after,
        review_seconds=(now - apv.pending_review_at).total_seconds()
        if apv.pending_review_at else None,
        idempotency_key=idempotency_key, idempotency_fingerprint=idempotency_fingerprint,
    )
    snapshot["also_applied_to"] = [a.code for a in siblings] if not error else []
    decision_audit_record(decision=record, snapshot=snapshot, context=context)

    payload = {"apv": apv.code, "decision": decision, "action_taken": action,
               "error": error, "status": status_after, "reviewer": reviewer.get_username(),
               "patch_revision": record.patch_revision, "decision_id": record.pk}
    send_event_on_commit("decisions", "decision.made", payload)
    for item in affected:
        item.status = status_after
        send_event_on_commit("apvs", "apv.updated", apv_payload(item))
    stats_push_on_commit()
    log.info("decision.recorded", apv=apv.code, decision=decision, action=action,
             failed=bool(error))
    return record


def _siblings(apv: APV, patch: Patch | None, decision: str, status: str) -> list[APV]:
    """Other APVs covered by the same patch and awaiting the same decision: a verdict on
    the patch is a verdict for them (recorded in the audit snapshot's also_applied_to)."""
    if patch is None or decision not in PATCH_DECISIONS:
        return []
    return list(patch.apvs.select_for_update(of=("self",)).exclude(pk=apv.pk)
                .filter(status=status, current_patch=patch)
                .select_related("project", "dependency", "advisory"))


def _act(decision: str, apv: APV, patch: Patch | None, reviewer, justification: str):
    """Carry out what the decision means; returns (action_taken, error, status_after)."""
    status = STATUS_AFTER[decision]
    try:
        if decision == DecisionType.APPROVE:
            return _approve(apv, patch, reviewer, justification)
        if decision == DecisionType.REJECT:
            return _reject(apv, patch), "", status
        if decision == DecisionType.ESCALATE:
            return "assigned_to_leads", "", status
        if decision == DecisionType.MODIFY:
            return "changes_requested", "", status
        if decision == DecisionType.ACCEPT_RISK:
            return "risk_accepted", "", status
        return "marked_false_positive", "", status
    except (GitError, ForgeFailure) as exc:
        log.warning("decision.action_failed", apv=apv.code, decision=decision, error=str(exc))
        return f"{decision}_failed", str(exc)[:4000], status


class ForgeFailure(Exception):
    pass


def _approve(apv: APV, patch: Patch | None, reviewer, justification: str):
    if patch is None or not patch.branch:
        # A manual patch: the approval is recorded; a rescan resolves the APV once it is done.
        return "recorded_manual_fix", "", APVStatus.APPROVED
    from apps.reviews.forge.adapter import github_forge_for

    message = (f"Merge {patch.branch}: {patch.title}\n\nApproved by "
               f"{reviewer.get_username()} ({apv.code}): {justification}")
    forge = github_forge_for(apv.project) if patch.forge_pr_number else None
    if forge is not None:
        try:
            merged = forge.merge_pull_request(number=patch.forge_pr_number,
                                              expected_head_sha=patch.commit_sha,
                                              commit_title=message.splitlines()[0])
        except Exception as exc:
            raise ForgeFailure(str(exc)) from exc
        action = "pull_request_merged"
    else:
        merged = merge_branch(repo=apv.project.path, target=apv.project.default_branch,
                              branch=patch.branch, message=message)
        action = "merged"
    Patch.objects.filter(pk=patch.pk).update(state=PatchState.MERGED, merge_commit=merged,
                                             updated_at=timezone.now())
    # approved → applied: the fix is on the default branch; a rescan resolves the APV.
    return action, "", APVStatus.APPLIED


def _reject(apv: APV, patch: Patch | None) -> str:
    if patch is None or not patch.branch:
        return "recorded"
    from apps.reviews.forge.adapter import github_forge_for

    forge = github_forge_for(apv.project) if patch.forge_pr_number else None
    if forge is not None:
        try:
            forge.close_pull_request(number=patch.forge_pr_number, branch=patch.branch)
        except Exception as exc:
            raise ForgeFailure(str(exc)) from exc
    delete_branch(repo=apv.project.path, branch=patch.branch)
    Patch.objects.filter(pk=patch.pk).update(state=PatchState.CLOSED, updated_at=timezone.now())
    return "pull_request_closed" if forge else "branch_deleted"


@transaction.atomic
def risk_acceptances_expire(*, now: datetime | None = None) -> list[str]:
    """Accepted risks whose expiry passed go back to ``pending_review`` (beat task)."""
    now = now or timezone.now()
    expired = list(APV.objects.select_for_update(of=("self",)).filter(
        status=APVStatus.RISK_ACCEPTED, risk_accepted_until__lte=now,
    ).select_related("project", "dependency", "advisory"))
    for apv in expired:
        apv.status, apv.pending_review_at, apv.risk_accepted_until = (
            APVStatus.PENDING_REVIEW, now, None)
        apv.save(update_fields=["status", "pending_review_at", "risk_accepted_until",
                                "updated_at"])
        send_event_on_commit("apvs", "apv.updated", apv_payload(apv))
    return [apv.code for apv in expired]
