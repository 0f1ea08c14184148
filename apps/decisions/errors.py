from apps.core.errors import (
    ApplicationError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
)


class DecisionInvalid(ApplicationError):
    code = "decision_invalid"


class DecisionNotFound(NotFoundError):
    """``not_found``, as every 404 of the API (docs/api.md, "Errors")."""


class DecisionForbidden(PermissionDeniedError):
    code = "decision_forbidden"


class DecisionConflict(ConflictError):
    """Stale revision, or the APV was decided (or moved on) meanwhile."""

    code = "decision_conflict"


class StaleRevision(DecisionConflict):
    """The decision names a revision that is not the APV's current one (or one no longer
    proposed); ``details.current_revision`` names the current one."""

    code = "stale_revision"


class IdempotencyKeyReused(ApplicationError):
    """The Idempotency-Key was used before with another request (another body or APV).

    422, as draft-ietf-httpapi-idempotency-key-header says for a reused key."""

    status_code = 422
    code = "idempotency_key_reused"


class IdempotencyKeyInProgress(ConflictError):
    """The request first sent with this key is still running after the bounded wait."""

    code = "idempotency_key_in_progress"
