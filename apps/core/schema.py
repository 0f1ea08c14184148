"""The OpenAPI schema's conventions, in one place (drf-spectacular's ``AutoSchema``).

Every operation gets:

- its roles, appended to its description (``**Roles:** ...``), read from the view's
  permission classes (``has_perm``, ``DjangoModelPermissions``) unless the view states
  them (``roles`` attribute, by HTTP method or for all);
- its error responses with the one error schema (``{"error": {"code", "message",
  "details"}}``): 401, 403, 429 and 503 on every operation, 400 where there is a body or
  a query parameter, 404 where the path names something, 413/415 where there is a body,
  and whatever the view declares with ``errors(...)`` in its ``extend_schema``.

``error`` ``code`` is an enum of every stable code (``stable_error_codes``), the list
``docs/api.md`` documents and ``tests/api`` checks.
"""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.permissions import DjangoModelPermissions

from apps.core.errors import ApplicationError
from apps.core.roles import LEADS, REVIEWERS, ROLE_PERMISSIONS

#: Codes the exception handler and the plain Django views answer with besides the
#: application's own (``ApplicationError`` subclasses).
FRAMEWORK_ERROR_CODES = (
    "validation_error", "parse_error", "invalid_request", "not_authenticated",
    "authentication_failed", "permission_denied", "not_found", "method_not_allowed",
    "not_acceptable", "unsupported_media_type", "request_too_large", "throttled",
    "service_unavailable", "server_error",
)

ANY_USER = "any authenticated user"


def _subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


#: Application codes no HTTP request can meet: the base class's default (every error the
#: services raise names its own), and errors of commands and tasks (``manage.py wargame``
#: with a bad exploit; a training without enough labels, which the task logs; a tampered
#: model, which routes the patch to a wargame instead) or that input validation rules out
#: before the service (an A/B rate outside (0, 1]).
NOT_OVER_HTTP = frozenset({"invalid", "wargame_invalid", "not_enough_labels", "model_integrity",
                           "experiment_invalid"})


def stable_error_codes() -> list[str]:
    """Every ``error.code`` the API may answer with: the framework's and those of every
    app's ``errors`` module (imported here, so the list does not depend on what else was)."""
    from django.utils.module_loading import autodiscover_modules

    # As the admin finds admin.py: core names no app, each app's errors.py declares its own.
    autodiscover_modules("errors")
    codes = set(FRAMEWORK_ERROR_CODES) | {cls.code for cls in _subclasses(ApplicationError)}
    return sorted(codes - NOT_OVER_HTTP)


class ErrorCodeField(serializers.CharField):
    """``error.code``: in the schema, an enum of every stable code (resolved when the schema
    is built, once every app's errors are imported)."""


class ErrorCodeFieldExtension(OpenApiSerializerFieldExtension):
    target_class = ErrorCodeField

    def map_serializer_field(self, auto_schema, direction):
        component = ResolvedComponent(
            name="ErrorCodeEnum", type=ResolvedComponent.SCHEMA, object="ErrorCodeEnum",
            schema={"type": "string", "enum": stable_error_codes(),
                    "description": "stable: clients may branch on it (docs/api.md, "
                                   "'Error codes')"})
        auto_schema.registry.register_on_missing(component)
        return component.ref


class ErrorBody(serializers.Serializer):
    code = ErrorCodeField()
    message = serializers.CharField(help_text="for people; may change")
    details = serializers.DictField(
        help_text="always an object: for validation_error the fields (or non_field_errors, "
                  "or the query parameters) with their messages; otherwise what the error "
                  "is about (e.g. current_revision)")


class Error(serializers.Serializer):
    """``{"error": {"code", "message", "details"}}``: every 4xx and 5xx of the API."""

    error = ErrorBody()


#: Statuses an operation may answer whatever it does, and why.
_ALWAYS = {
    400: "The request is not valid: a body or query parameter (validation_error, details "
         "keyed by field or parameter; parse_error), or a path or query with control "
         "characters or bytes that are not UTF-8 (invalid_request).",
    401: "No or an invalid token or session (not_authenticated, authentication_failed).",
    403: "The caller's role does not allow this (permission_denied or a more specific "
         "code); a session without its CSRF token on a write.",
    429: "Too many requests (throttled); Retry-After says when to try again.",
    503: "A service this request needs (database, cache, broker) is down "
         "(service_unavailable); Retry-After says when to try again.",
}


def errors(**statuses: str) -> dict[int, OpenApiResponse]:
    """Error responses a view declares in ``extend_schema(responses={..., **errors(
    409="...")})``; keys are ``_409`` style or plain numbers given as strings."""
    return {int(code.lstrip("_")): OpenApiResponse(response=Error, description=why)
            for code, why in statuses.items()}


def _role_of(perms: list[str]) -> str:
    if not perms:
        return ANY_USER
    reviewers = set(ROLE_PERMISSIONS[REVIEWERS])
    leads = set(ROLE_PERMISSIONS[LEADS])
    if all(p in reviewers for p in perms):
        return f"{REVIEWERS} and {LEADS}"
    if all(p in leads for p in perms):
        return LEADS
    return "users granted " + ", ".join(perms)


class ImmuneAutoSchema(AutoSchema):
    def get_description(self) -> str:
        text = super().get_description() or ""
        roles = self.roles()
        return f"{text}\n\n**Roles:** {roles}." if text else f"**Roles:** {roles}."

    def roles(self) -> str:
        stated = getattr(self.view, "roles", None)
        if isinstance(stated, dict):
            stated = stated.get(self.method) or stated.get("*")
        if stated:
            return stated
        permissions = self.view.get_permissions()
        if not permissions:
            return "anyone (no authentication)"
        perms: list[str] = []
        for permission in permissions:
            if getattr(permission, "perm", None):
                perms.append(permission.perm)
            elif isinstance(permission, DjangoModelPermissions):
                queryset = getattr(self.view, "queryset", None)
                if queryset is not None:
                    perms += permission.get_required_permissions(self.method, queryset.model)
        return _role_of(perms)

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        for status, why in self._error_statuses().items():
            if str(status) not in responses:
                responses[str(status)] = self._get_response_for_code(
                    OpenApiResponse(response=Error, description=why), str(status))
        return dict(sorted(responses.items()))

    def _error_statuses(self) -> dict[int, str]:
        statuses = dict(_ALWAYS)
        if not self.view.get_permissions():  # open to anyone (the token exchange)
            del statuses[401], statuses[403]
        has_body = self.method in ("POST", "PUT", "PATCH")
        if "{" in self.path:
            statuses[404] = "Nothing has the identifier in the path (not_found)."
        elif has_body:
            statuses[404] = "Nothing has an identifier the body names (not_found)."
        elif self.method == "GET" and self._is_list_view() and \
                getattr(self.view, "pagination_class", None):
            statuses[404] = "The page is beyond the last one (not_found)."
        if has_body:
            statuses[413] = "The body is larger than API_MAX_BODY_BYTES (request_too_large)."
            statuses[415] = "The body is not JSON or a form (unsupported_media_type)."
        return statuses
