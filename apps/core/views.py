"""Operations endpoints, the metrics gate, the login forms and small API views."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.contrib import admin
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET
from django_ratelimit.decorators import ratelimit
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core import health
from apps.core.exceptions import error_body
from apps.core.roles import LEADS, REVIEWERS

SERVICE = "immune"


def home(request: HttpRequest) -> HttpResponse:
    return redirect("admin:index")


# --- Health (the only unauthenticated endpoints) -------------------------------------------
@require_GET
@never_cache
def health_basic(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok", "service": SERVICE, "environment": settings.IMMUNE_ENV})


@require_GET
@never_cache
def health_live(request: HttpRequest) -> JsonResponse:
    """The process answers: nothing external is checked, so a restart would not help more."""
    return JsonResponse({"status": "alive"})


def _checks_response(*, ready_gate: bool) -> JsonResponse:
    overall, components = health.run_checks()
    status = 503 if ready_gate and overall == health.UNHEALTHY else 200
    return JsonResponse(
        {
            "status": overall,
            "ready": overall != health.UNHEALTHY,
            "components": {c.name: c.as_dict() for c in components},
        },
        status=status,
    )


@require_GET
@never_cache
def health_ready(request: HttpRequest) -> JsonResponse:
    return _checks_response(ready_gate=True)


@require_GET
@never_cache
def health_components(request: HttpRequest) -> JsonResponse:
    return _checks_response(ready_gate=False)


@require_GET
@never_cache
def health_startup(request: HttpRequest) -> JsonResponse:
    """Started = the database answers and every migration is applied."""
    try:
        executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except Exception as exc:
        connections[DEFAULT_DB_ALIAS].close()
        return JsonResponse(
            {"status": "starting", "error": type(exc).__name__}, status=503
        )
    if pending:
        return JsonResponse(
            {"status": "starting", "pending_migrations": len(pending)}, status=503
        )
    return JsonResponse({"status": "started"})


# --- Metrics -------------------------------------------------------------------------------
@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition for staff sessions or ``Authorization: Bearer $METRICS_TOKEN``."""
    token = settings.METRICS_TOKEN
    supplied = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    token_ok = bool(token) and hmac.compare_digest(supplied.encode(), token.encode())
    if not (token_ok or (request.user.is_authenticated and request.user.is_staff)):
        return JsonResponse(
            error_body("not_authenticated", "Metrics need a staff login or the metrics token."),
            status=401,
        )
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    from apps.core.metrics import exposition_registry

    return HttpResponse(generate_latest(exposition_registry()), content_type=CONTENT_TYPE_LATEST)


# --- Login ---------------------------------------------------------------------------------
admin_login = ratelimit(key="ip", rate=settings.LOGIN_RATE_LIMIT, method="POST", block=True)(
    admin.site.login
)


def login_retry_after() -> int:
    """Seconds until the login rate limit's window (``LOGIN_RATE_LIMIT``, e.g. 10/m) ends."""
    from django_ratelimit.core import _split_rate

    return int(_split_rate(settings.LOGIN_RATE_LIMIT)[1])


def ratelimited(request: HttpRequest, exception: Exception) -> HttpResponse:
    wait = login_retry_after()
    if request.path.startswith("/api/"):
        response = JsonResponse(
            error_body("throttled", "Too many attempts; wait a minute and try again.",
                       {"retry_after_seconds": wait}), status=429)
    else:
        response = HttpResponse("Too many attempts; wait a minute and try again.", status=429)
    response["Retry-After"] = str(wait)
    return response


class TokenObtainView(ObtainAuthToken):
    """Exchange a username and password for the user's API token (rate limited)."""


    @extend_schema(
        responses=inline_serializer("TokenOutput", {"token": serializers.CharField()}),
    )
    def post(self, request, *args, **kwargs):
        limited = ratelimit(key="ip", rate=settings.LOGIN_RATE_LIMIT, method="POST", block=True)
        return limited(super().post)(request, *args, **kwargs)


class MeView(APIView):
    """Who the caller is and which roles they hold."""

    @extend_schema(
        responses=inline_serializer(
            "MeOutput",
            {
                "username": serializers.CharField(),
                "roles": serializers.ListField(child=serializers.CharField()),
                "is_staff": serializers.BooleanField(),
            },
        )
    )
    def get(self, request):
        groups = set(request.user.groups.values_list("name", flat=True))
        roles = [r for r in (REVIEWERS, LEADS) if r in groups]
        return Response(
            {"username": request.user.get_username(), "roles": roles,
             "is_staff": request.user.is_staff}
        )


def json_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """404 for the whole site: JSON under /api/, Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("not_found", "No such resource."), status=404)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


@csrf_exempt  # nothing is read or changed: a POST without a CSRF token gets the 404 too
def api_not_found(request: HttpRequest, rest: str = "") -> HttpResponse:
    """Any path under /api/ no route took: a JSON 404 on every profile (with ``DEBUG`` on,
    Django would answer its HTML debug page), naming the path with a slash when that one
    exists (routes end in a slash, except the action routes of wargaming and A/B testing)."""
    from django.urls import Resolver404, resolve

    details: dict[str, str] = {"path": request.path}
    if not request.path.endswith("/"):
        try:
            match = resolve(request.path + "/")
        except Resolver404:
            match = None
        if match is not None and match.func is not api_not_found:
            details["did_you_mean"] = request.path + "/"
    return JsonResponse(error_body("not_found", f"No API route {request.path}.", details),
                        status=404)


def json_server_error(request: HttpRequest) -> HttpResponse:
    from apps.core.unavailable import current_exception, is_unavailable, unavailable_response

    exc = current_exception()
    if is_unavailable(exc):  # failed in a middleware (a session read): come back later
        return unavailable_response(request, exc)
    if request.path.startswith("/api/"):
        return JsonResponse(
            error_body("server_error", "An internal error occurred; it has been logged."),
            status=500,
        )
    from django.views.defaults import server_error

    return server_error(request)
