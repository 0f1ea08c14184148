from apps.core.errors import ApplicationError, ConflictError, NotFoundError


class PatchInvalid(ApplicationError):
    code = "patch_invalid"


class PatchConflict(ConflictError):
    code = "patch_conflict"


class APVNotFound(NotFoundError):
    code = "apv_not_found"
