"""Hostile input is refused at the door: a 400 or 413, never a 500 (issue 13).

PostgreSQL refuses NUL in text, so a NUL in a path or query that reached a selector was a
500; a 20 MB body was read whole before anything looked at it. ``RequestGuardMiddleware``
runs before sessions, CSRF and the views and refuses:

- a ``Content-Length`` over ``API_MAX_BODY_BYTES`` (413, without reading the body) or one
  that is not a number (400);
- a path or query holding a control character (C0 or DEL) or bytes that are not UTF-8 (400).

JSON bodies are checked by ``apps.core.parsers.StrictJSONParser``. API paths answer in the
error format (``apps.core.exceptions.error_body``), other pages in plain text.
"""

from __future__ import annotations

import re

from django.conf import settings
from django.core.handlers.wsgi import WSGIRequest
from django.http import HttpRequest, HttpResponse, JsonResponse

from apps.core.exceptions import error_body

#: C0 controls and DEL: nothing a path or a query parameter legitimately holds.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
#: What a decoder puts where the bytes were not UTF-8.
REPLACEMENT = "\ufffd"


def refusal(request: HttpRequest, status: int, code: str, message: str,
            details: dict | None = None) -> HttpResponse:
    """The same refusal as JSON under /api/ and as plain text elsewhere."""
    if request.path_info.startswith("/api/"):
        return JsonResponse(error_body(code, message, details), status=status)
    return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")


def too_large(request: HttpRequest) -> HttpResponse:
    limit = settings.API_MAX_BODY_BYTES
    return refusal(request, 413, "request_too_large",
                   f"The request body is larger than {limit} bytes.", {"max_bytes": limit})


def _path_is_valid(request: HttpRequest) -> bool:
    if CONTROL_CHARACTERS.search(request.path_info) or REPLACEMENT in request.path_info:
        return False
    if isinstance(request, WSGIRequest):
        # Django re-percent-encodes bytes that are not UTF-8 rather than refusing them.
        raw = request.environ.get("PATH_INFO", "")
        try:
            raw.encode("latin-1").decode("utf-8")
        except UnicodeError:
            return False
    return True


def _query_is_valid(request: HttpRequest) -> bool:
    # QueryDict decodes with errors="replace", so bytes that are not UTF-8 show up as U+FFFD.
    for key, values in request.GET.lists():
        for text in (key, *values):
            if CONTROL_CHARACTERS.search(text) or REPLACEMENT in text:
                return False
    return True


class RequestGuardMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        declared = request.META.get("CONTENT_LENGTH") or ""
        if declared:
            try:
                length = int(declared)
            except ValueError:
                length = -1
            if length < 0:
                return refusal(request, 400, "invalid_request",
                               "Content-Length is not a byte count.", {"where": "headers"})
            if length > settings.API_MAX_BODY_BYTES:
                return too_large(request)
        if not _path_is_valid(request):
            return refusal(request, 400, "invalid_request",
                           "The path holds a control character or bytes that are not UTF-8.",
                           {"where": "path"})
        if not _query_is_valid(request):
            return refusal(request, 400, "invalid_request",
                           "The query holds a control character or bytes that are not UTF-8.",
                           {"where": "query"})
        return self.get_response(request)
