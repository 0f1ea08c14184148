from apps.core.errors import ApplicationError, ConflictError, PermissionDeniedError


class DecisionInvalid(ApplicationError):
    code = "decision_invalid"


class DecisionForbidden(PermissionDeniedError):
    code = "decision_forbidden"


class DecisionConflict(ConflictError):
    """Stale revision, or the APV was decided (or moved on) meanwhile."""

    code = "decision_conflict"
