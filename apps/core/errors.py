"""Error codes of the core app and the exception every service raises.

Services raise ``ApplicationError`` (or a subclass); the API's exception handler
turns it into ``{"error": {"code", "message", "details"}}`` with its status, and the
admin shows its message. Codes are stable strings clients may branch on.
"""

from __future__ import annotations

from typing import Any


class ApplicationError(Exception):
    status_code = 400
    code = "invalid"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: Any = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        if status_code:
            self.status_code = status_code
        self.details = details if details is not None else {}


class NotFoundError(ApplicationError):
    status_code = 404
    code = "not_found"


class PermissionDeniedError(ApplicationError):
    status_code = 403
    code = "permission_denied"


class ConflictError(ApplicationError):
    """The state changed under the caller (stale revision, decided meanwhile): HTTP 409."""

    status_code = 409
    code = "conflict"
