from apps.core.instrumentation import instrumented_task
from apps.decisions.services import risk_acceptances_expire


@instrumented_task(name="decisions.expire_risk_acceptances")
def expire_risk_acceptances() -> list[str]:
    """Beat: accepted risks past their expiry go back to pending_review."""
    return risk_acceptances_expire()
