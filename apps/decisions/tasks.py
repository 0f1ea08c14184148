from django.conf import settings

from apps.core.instrumentation import instrumented_task
from apps.decisions.apply import ApplyRetryable, decision_apply, decisions_requeue_stale
from apps.decisions.services import risk_acceptances_expire


@instrumented_task(name="decisions.expire_risk_acceptances")
def expire_risk_acceptances() -> list[str]:
    """Beat: accepted risks past their expiry go back to pending_review."""
    return risk_acceptances_expire()


@instrumented_task(name="decisions.apply", bind=True,
                   max_retries=settings.DECISION_APPLY_RETRIES)
def apply_decision(self, decision_id: int) -> str:
    """Step two of a decision (apps/decisions/apply.py): git and the forge act. Transient
    failures are retried with backoff (5 s, 10 s, 20 s … at most 5 minutes); the last
    attempt records them as apply_failed."""
    if self.request.is_eager:
        # In-process (the embedded profile): no broker to come back later, so the attempts
        # follow each other at once, and the last one records the failure.
        for attempt in range(self.max_retries + 1):
            try:
                return decision_apply(decision_id=decision_id,
                                      last_attempt=attempt == self.max_retries)
            except ApplyRetryable:
                continue
    last = self.request.retries >= self.max_retries
    try:
        return decision_apply(decision_id=decision_id, last_attempt=last)
    except ApplyRetryable as exc:
        raise self.retry(exc=exc, countdown=min(5 * 2 ** self.request.retries, 300)) from exc


@instrumented_task(name="decisions.requeue_stale")
def requeue_stale_decisions() -> list[int]:
    """Beat: decisions left applying (broker down at commit, worker died) are queued again."""
    return decisions_requeue_stale()
