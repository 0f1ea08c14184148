from apps.core.errors import ApplicationError, NotFoundError


class ProjectInvalid(ApplicationError):
    code = "project_invalid"


class ProjectNotFound(NotFoundError):
    code = "project_not_found"


class ScanFailed(ApplicationError):
    code = "scan_failed"
    status_code = 422
