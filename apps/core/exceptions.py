"""The one DRF exception handler: every API error has the same shape.

    {"error": {"code": "...", "message": "...", "details": {...}}}
"""

from __future__ import annotations

from typing import Any

import structlog
from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from django_ratelimit.exceptions import Ratelimited
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from apps.core.errors import ApplicationError
from apps.core.parsers import RequestTooLarge
from apps.core.unavailable import is_unavailable, unavailable_response

log = structlog.get_logger(__name__)


def error_details(details: Any) -> dict[str, Any]:
    """``details`` is always an object: keyed by field (or ``non_field_errors``) for a
    validation error, by what it is about otherwise. A bare message or list of messages
    (``ValidationError("...")``) goes under ``non_field_errors``."""
    if details is None or details == "" or details == []:
        return {}
    if isinstance(details, dict):
        return details
    if isinstance(details, (list, tuple)):
        return {"non_field_errors": list(details)}
    return {"non_field_errors": [details]}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": error_details(details)}}


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    if isinstance(exc, ApplicationError):
        return Response(error_body(exc.code, exc.message, exc.details), status=exc.status_code)
    if isinstance(exc, RequestDataTooBig):
        # Django's DATA_UPLOAD_MAX_MEMORY_SIZE (= API_MAX_BODY_BYTES), met reading a form body.
        exc = RequestTooLarge(f"The request body is larger than {settings.API_MAX_BODY_BYTES} "
                              "bytes.")
    if isinstance(exc, Ratelimited):
        from apps.core.views import login_retry_after

        # A wait makes DRF send Retry-After, as every 429 must.
        exc = exceptions.Throttled(wait=login_retry_after(),
                                   detail="Too many requests; slow down and try again.")
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )

    response = drf_exception_handler(exc, context)
    if response is None and is_unavailable(exc):
        return unavailable_response(context["request"], exc)
    if response is None:
        # An unexpected failure: log it with the request id bound, answer without internals.
        log.exception("api.unhandled_exception", exc_type=type(exc).__name__)
        return Response(
            error_body("server_error", "An internal error occurred; it has been logged."),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )

    if isinstance(exc, exceptions.ValidationError):
        details = error_details(exc.detail)
        code = "validation_error"
        message = "The request is not valid: " + ", ".join(details) + "." if details else \
            "The request is not valid."
    else:
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else exc.default_code
        message = str(exc.detail) if not isinstance(exc.detail, (list, dict)) else str(exc)
        details = {}
        if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
            details = {"retry_after_seconds": int(exc.wait)}
        if code == "request_too_large":
            details = {"max_bytes": settings.API_MAX_BODY_BYTES}
    response.data = error_body(code, message, details)
    return response
