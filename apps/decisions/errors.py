from apps.core.errors import (
    ApplicationError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
)


class DecisionInvalid(ApplicationError):
    code = "decision_invalid"


class DecisionNotFound(NotFoundError):
    code = "decision_not_found"


class DecisionForbidden(PermissionDeniedError):
    code = "decision_forbidden"


class DecisionConflict(ConflictError):
    """Stale revision, or the APV was decided (or moved on) meanwhile."""

    code = "decision_conflict"


class IdempotencyKeyReused(ApplicationError):
    """The Idempotency-Key was used before with another request (another body or APV).

    422, as draft-ietf-httpapi-idempotency-key-header says for a reused key."""

    status_code = 422
    code = "idempotency_key_reused"


class IdempotencyKeyInProgress(ConflictError):
    """The request first sent with this key is still running after the bounded wait."""

    code = "idempotency_key_in_progress"
