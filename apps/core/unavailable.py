"""A dependency that is down is a 503 with Retry-After, never a 500 (issue 12).

The database refusing connections (PostgreSQL down, the pool exhausted) or the broker
refusing a task (Redis down: ``DependencyUnavailable``, from ``apps/core/queue.py``) says
nothing about the request: the client should come back. Recognised here once; answered by
the API's exception handler, by ``UnavailableMiddleware`` for other views, and by
``handler500`` for what fails inside other middleware (a session read).
"""

from __future__ import annotations

import sys

import structlog
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

log = structlog.get_logger(__name__)

RETRY_AFTER_S = 5

#: What a client is told is down, by dependency.
DESCRIPTIONS = {
    "database": "The database is unavailable",
    "broker": "The task queue is unavailable, so nothing was changed",
}


class DependencyUnavailable(Exception):  # noqa: N818 (reads as what happened)
    """A dependency this request needs is down; the request changed nothing."""

    def __init__(self, dependency: str) -> None:
        super().__init__(f"{dependency} unavailable")
        self.dependency = dependency


def _unavailable_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [OperationalError, InterfaceError, DependencyUnavailable]
    try:
        from psycopg_pool import PoolTimeout

        types.append(PoolTimeout)
    except ImportError:  # no pool installed
        pass
    return tuple(types)


UNAVAILABLE = _unavailable_types()


def is_unavailable(exc: BaseException | None) -> bool:
    return isinstance(exc, UNAVAILABLE)


def unavailable_response(request: HttpRequest, exc: BaseException) -> HttpResponse:
    from apps.core.exceptions import error_body

    dependency = getattr(exc, "dependency", "database")
    log.warning("request.dependency_unavailable", dependency=dependency,
                error=type(exc).__name__, path=request.path)
    message = f"{DESCRIPTIONS[dependency]}; try again shortly."
    if request.path.startswith("/api/"):
        response = JsonResponse(error_body("service_unavailable", message,
                                           {"dependency": dependency,
                                            "retry_after_seconds": RETRY_AFTER_S}), status=503)
    else:
        response = HttpResponse(message, status=503, content_type="text/plain")
    response["Retry-After"] = str(RETRY_AFTER_S)
    return response


def current_exception() -> BaseException | None:
    """The exception being handled (handler500 is called inside Django's except block)."""
    return sys.exc_info()[1]


class UnavailableMiddleware:
    """Views (admin, console) that hit a database that is down answer 503."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if is_unavailable(exception):
            return unavailable_response(request, exception)
        return None
