from apps.core.errors import ApplicationError, NotFoundError


class ProjectInvalid(ApplicationError):
    code = "project_invalid"


class ProjectNotFound(NotFoundError):
    """``not_found``, as every 404 of the API (docs/api.md, "Errors")."""


class ScanFailed(ApplicationError):
    code = "scan_failed"
    status_code = 422
