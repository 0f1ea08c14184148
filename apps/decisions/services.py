"""``decision_record``: a reviewer's verdict on an APV's patch revision, in two steps.

Step one, here, in one transaction: exactly once, the APV row is locked (PostgreSQL) and
claimed with a conditional UPDATE on its status and patch (every database), so of several
concurrent decisions one wins and the others answer 409 and write nothing; the decision,
its audit row and the APVs it moves (the APV and its siblings on the same patch revision)
are stored. Step two (``apps.decisions.apply``) runs the action (merge, branch deletion,
pull request) after commit in a Celery task, holding no lock, and records its outcome: a
failed action (a merge conflict) puts the APVs back where they were, with the failure
recorded and retryable. Live events go out after commit.

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
from django.conf import settings
from django.db import IntegrityError, OperationalError, connection, transaction
from django.utils import timezone

from apps.core.queue import require_broker
from apps.core.realtime import send_event_on_commit
from apps.decisions.apply import decision_dispatch
from apps.decisions.errors import (
    DecisionConflict,
    DecisionForbidden,
    DecisionInvalid,
    DecisionNotFound,
    IdempotencyKeyInProgress,
    IdempotencyKeyReused,
    StaleRevision,
)
from apps.decisions.events import (
    DecisionContext,
    apv_snapshot,
    decision_audit_record,
    decision_payload,
)
from apps.decisions.models import Decision, DecisionType, Outcome
from apps.reviews.errors import APVNotFound
from apps.reviews.models import APV, APVStatus, Patch, PatchState
from apps.reviews.services.decided import (
    apv_claim,
    apvs_decided,
    apvs_lock_siblings,
    apvs_risk_acceptances_expire,
)

log = structlog.get_logger(__name__)

MIN_JUSTIFICATION = 10
#: How long a request waits for the request first sent with its Idempotency-Key to finish
#: (PostgreSQL; on SQLite the database's busy timeout bounds the wait).
IDEMPOTENCY_WAIT_S = settings.DECISION_IDEMPOTENCY_WAIT_S
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
    if decision in (DecisionType.APPROVE, DecisionType.REJECT):
        require_broker()  # step two is a task: without a broker nothing is written (503)
    try:
        with transaction.atomic():
            if key:
                _hold_key(reviewer, key)
                if (first := _replay(reviewer, key, fingerprint)) is not None:
                    return first  # it ran while this one waited for the key
            record = _decide(
                apv_code=apv_code, reviewer=reviewer, decision=decision,
                justification=justification.strip(), confidence=confidence,
                modifications=modifications.strip(), patch_revision=patch_revision,
                expires_at=expires_at, idempotency_key=key,
                idempotency_fingerprint=fingerprint, context=context)
        if record.outcome == Outcome.APPLYING:
            decision_dispatch(record.pk)
            record.refresh_from_db()  # on the embedded profile step two has run by now
        return DecisionResult(record)
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
    """Step one: the decision, its audit row and the APVs it moves, in one transaction.
    Git and the forge act in step two, after commit (``apps.decisions.apply``)."""
    apv = (APV.objects.select_for_update(of=("self",))
           .select_related("project", "dependency", "advisory", "current_patch")
           .filter(code=apv_code).first())
    if apv is None:
        raise APVNotFound(f"No APV {apv_code}.", details={"apv": apv_code})
    _check_permission(reviewer, apv, decision)
    patch = apv.current_patch
    _check_revision(apv, patch, patch_revision)
    status_before = apv.status
    status_after = STATUS_AFTER[decision]
    # The claim: only one decision can move the APV off the status it was read in.
    if not apv_claim(apv=apv, status_before=status_before, patch=patch, status=status_after):
        raise DecisionConflict(f"{apv.code} was decided meanwhile.")

    now = timezone.now()
    snapshot = apv_snapshot(apv)
    siblings = (apvs_lock_siblings(apv=apv, patch=patch, status=status_before)
                if patch is not None and decision in PATCH_DECISIONS else [])
    needs_action = acts_on_git(decision, patch)
    action = "" if needs_action else _recorded_action(decision, patch)
    record = Decision.objects.create(
        apv=apv, patch=patch, patch_revision=patch.revision if patch else None,
        decision=decision, justification=justification, confidence=confidence,
        modifications=modifications, expires_at=expires_at, reviewer=reviewer,
        decided_at=now, action_taken=action,
        outcome=Outcome.APPLYING if needs_action else Outcome.APPLIED,
        applied_at=None if needs_action else now,
        status_before=status_before, status_after=status_after,
        review_seconds=(now - apv.pending_review_at).total_seconds()
        if apv.pending_review_at else None,
        idempotency_key=idempotency_key, idempotency_fingerprint=idempotency_fingerprint,
    )
    record.also_applied_to.set(siblings)
    # Live clients hear of the decision first, then of the APVs it moved (after commit).
    send_event_on_commit("decisions", "decision.made", decision_payload(record))
    apvs_decided(apvs=[apv, *siblings], status=status_after, risk_accepted_until=expires_at,
                 now=now)
    snapshot["also_applied_to"] = [a.code for a in siblings]
    decision_audit_record(decision=record, snapshot=snapshot, context=context)
    log.info("decision.recorded", apv=apv.code, decision=decision, outcome=record.outcome,
             siblings=len(siblings))
    return record


def _check_revision(apv: APV, patch: Patch | None, patch_revision: int | None) -> None:
    """A decision names the revision it judges, and it must be the APV's current one: a
    missing revision is a 400 naming the field, another one a 409 naming the current one
    (spec, "APV status": a decision applies to one patch revision)."""
    if patch is None:
        return
    current = {"current_revision": patch.revision, "current_patch": patch.pk}
    if patch_revision is None:
        raise DecisionInvalid(
            f"patch_revision is required: {apv.code}'s current patch is revision "
            f"{patch.revision} (patch {patch.pk}).",
            details={"patch_revision": [f"required: the current revision is {patch.revision}"]})
    if patch_revision != patch.revision:
        raise StaleRevision(
            f"{apv.code}'s current patch is revision {patch.revision} (patch {patch.pk}); "
            f"you sent {patch_revision}. Reload and decide on the current revision.",
            details={**current, "patch_revision": patch_revision})
    if patch.state != PatchState.PROPOSED:
        # A revision that is no longer proposed (superseded, merged, closed) is judged no
        # more, whatever the APV still points at.
        raise StaleRevision(
            f"{apv.code}'s revision {patch.revision} is {patch.state}; it cannot be "
            "decided.", details={**current, "patch_state": patch.state})


def acts_on_git(decision: str, patch: Patch | None) -> bool:
    """Whether the decision has an action for step two: approving or rejecting a patch
    with a branch merges it or deletes it (or merges/closes its pull request)."""
    return (decision in (DecisionType.APPROVE, DecisionType.REJECT)
            and patch is not None and bool(patch.branch))


def _recorded_action(decision: str, patch: Patch | None) -> str:
    """What a decision with nothing for git or the forge to do did: it is recorded."""
    if decision == DecisionType.APPROVE:
        # A manual patch: the approval is recorded; a rescan resolves the APV once it is done.
        return "recorded_manual_fix"
    return {DecisionType.REJECT: "recorded", DecisionType.ESCALATE: "assigned_to_leads",
            DecisionType.MODIFY: "changes_requested",
            DecisionType.ACCEPT_RISK: "risk_accepted",
            DecisionType.FALSE_POSITIVE: "marked_false_positive"}[decision]


def decision_retry(*, decision_id: int, user, via: str = "api") -> Decision:
    """Try a failed decision's action again (a merge that conflicted, a forge that was
    down). The decision claims its APV again, as in step one: only if the APV is still where
    the failure left it, on the same patch revision, and the user may still make that
    decision there; siblings still beside it come along. Then step two runs again."""
    with transaction.atomic():
        record = (Decision.objects.select_for_update(of=("self",))
                  .select_related("apv", "patch", "reviewer").filter(pk=decision_id).first())
        if record is None:
            raise DecisionNotFound(f"No decision {decision_id}.",
                                   details={"decision": decision_id})
        if record.outcome != Outcome.APPLY_FAILED:
            raise DecisionConflict(
                f"Decision {decision_id} is {record.outcome}; only a failed one is retried.",
                details={"outcome": record.outcome})
        apv = (APV.objects.select_for_update(of=("self",))
               .select_related("project", "dependency", "advisory", "current_patch")
               .get(pk=record.apv_id))
        if apv.current_patch_id != record.patch_id or apv.status != record.status_before:
            raise DecisionConflict(
                f"{apv.code} moved since the decision failed (now {apv.status}, patch "
                f"revision {apv.current_patch.revision if apv.current_patch else None}); "
                "decide it again instead.", details={"status": apv.status})
        _check_permission(user, apv, record.decision)
        claimed = STATUS_AFTER[record.decision]
        if not apv_claim(apv=apv, status_before=record.status_before, patch=record.patch,
                         status=claimed):
            raise DecisionConflict(f"{apv.code} was decided meanwhile.")
        siblings = apvs_lock_siblings(apv=apv, patch=record.patch, status=record.status_before)
        apvs_decided(apvs=[apv, *siblings], status=claimed)
        record.also_applied_to.set(siblings)
        record.outcome, record.status_after = Outcome.APPLYING, claimed
        record.action_taken, record.action_error = "", ""
        record.apply_log = [*record.apply_log, {
            "retried_by": user.get_username(), "via": via,
            "at": timezone.now().isoformat()}]
        record.save(update_fields=["outcome", "status_after", "action_taken", "action_error",
                                   "apply_log"])
        send_event_on_commit("decisions", "decision.made", decision_payload(record))
        log.info("decision.retried", decision=record.pk, apv=apv.code,
                 user=user.get_username())
    decision_dispatch(record.pk)
    record.refresh_from_db()
    return record


@transaction.atomic
def risk_acceptances_expire(*, now: datetime | None = None) -> list[str]:
    """Accepted risks whose expiry passed go back to ``pending_review`` (beat task)."""
    return [apv.code for apv in apvs_risk_acceptances_expire(now=now or timezone.now())]
