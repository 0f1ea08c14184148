from apps.core.errors import ApplicationError, ConflictError, NotFoundError


class PatchInvalid(ApplicationError):
    code = "patch_invalid"


class PatchConflict(ConflictError):
    code = "patch_conflict"


class APVNotFound(NotFoundError):
    """``not_found``, as every 404 of the API (docs/api.md, "Errors"): a missing APV is the
    same error on GET and on POST."""
