"""Query parameters of the API's lists, validated: one declaration per list gives the
parser and the OpenAPI parameters.

A list names its filters and its ordering keys. A request with a parameter the list does
not know, a value outside a filter's choices (``status=bogus``), a boolean that is not one
(``overdue=maybe``) or an unknown ordering key is answered 400 ``validation_error`` with
``details`` keyed by the parameter, never ignored. Every ordering ends with the list's
unique tie-breaker (``code`` for APVs, ``id`` elsewhere), so rows that tie keep their
order from one page to the next. Pagination (``page``, ``page_size``) and DRF's ``format``
are accepted everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework.exceptions import ValidationError

#: Accepted by every list: the paginator's and DRF's content negotiation.
COMMON = ("page", "page_size", "format")
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")
MAX_VALUES = 100  # comma-separated values of one filter


@dataclass(frozen=True)
class Filter:
    """One query parameter. ``kind``: ``choice`` (``choices``, comma-separated when
    ``many``), ``str`` (comma-separated when ``many``), ``bool``, ``int`` or ``datetime``
    (an ISO date or date-time; a date is its midnight UTC)."""

    name: str
    kind: str = "str"
    description: str = ""
    choices: Sequence[str] = ()
    many: bool = False

    def parse(self, raw: str) -> Any:
        if self.kind == "bool":
            value = raw.strip().lower()
            if value in _TRUE:
                return True
            if value in _FALSE:
                return False
            raise ValueError(f"{raw!r} is not a boolean: use true or false")
        if self.kind == "int":
            values = self._split(raw) if self.many else [raw.strip()]
            if not all(v.isdigit() and len(v) < 12 for v in values):
                raise ValueError(f"{raw!r} is not a positive integer" +
                                 (" list" if self.many else ""))
            return [int(v) for v in values] if self.many else int(values[0])
        if self.kind == "datetime":
            return parse_when(raw)
        values = self._split(raw) if self.many else [raw.strip()]
        if self.kind == "choice":
            unknown = [v for v in values if v not in self.choices]
            if unknown:
                raise ValueError(f"unknown value{'s' if len(unknown) > 1 else ''} "
                                 f"{', '.join(map(repr, unknown))}; one of: "
                                 f"{', '.join(self.choices)}")
        return values if self.many else values[0]

    @staticmethod
    def _split(raw: str) -> list[str]:
        values = [v.strip() for v in raw.split(",")]
        if any(not v for v in values):
            raise ValueError("empty value in a comma-separated list")
        if len(values) > MAX_VALUES:
            raise ValueError(f"at most {MAX_VALUES} values")
        return values

    def openapi(self) -> OpenApiParameter:
        kind = {"bool": OpenApiTypes.BOOL, "int": OpenApiTypes.INT,
                "datetime": OpenApiTypes.STR}.get(self.kind, OpenApiTypes.STR)
        description = self.description
        if self.many:
            description = (description + " " if description else "") + "(comma-separated)"
        return OpenApiParameter(
            self.name, kind, OpenApiParameter.QUERY, description=description,
            enum=list(self.choices) if self.kind == "choice" else None,
            many=self.many or None, explode=False if self.many else None)


def parse_when(raw: str) -> datetime:
    value = raw.strip()
    parsed = parse_datetime(value)
    if parsed is None and (day := parse_date(value)) is not None:
        parsed = datetime.combine(day, time.min)
    if parsed is None:
        raise ValueError(f"{raw!r} is not an ISO date or date-time")
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed, UTC)
    return parsed


@dataclass(frozen=True)
class ListQuery:
    """A list's filters and ordering. ``ordering``: the public keys and the model fields
    each sorts by; ``default``: the keys (with ``-``) used without ``ordering``;
    ``tie_breaker``: the unique field appended to every ordering."""

    filters: Sequence[Filter] = ()
    ordering: Mapping[str, str] = field(default_factory=dict)
    default: Sequence[str] = ()
    tie_breaker: str = "id"
    tie_breaker_field: str = ""

    def parse(self, params: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
        """(filter values by name, ORM ordering); ValidationError naming each bad
        parameter."""
        problems: dict[str, list[str]] = {}
        known = {f.name: f for f in self.filters}
        values: dict[str, Any] = {}
        for name in params:
            if name in COMMON or (name == "ordering" and self.ordering):
                continue
            if name not in known:
                accepted = sorted([*known, *(["ordering"] if self.ordering else []), *COMMON])
                problems[name] = [f"unknown parameter; this list accepts: {', '.join(accepted)}"]
                continue
            raw = params[name]
            if raw == "":
                continue  # an empty filter filters nothing, as an HTML form sends it
            try:
                values[name] = known[name].parse(raw)
            except ValueError as exc:
                problems[name] = [str(exc)]
        ordering: list[str] = []
        if self.ordering:
            try:
                ordering = self.order_by(params.get("ordering", ""))
            except ValueError as exc:
                problems["ordering"] = [str(exc)]
        if problems:
            raise ValidationError(problems)
        return values, ordering

    def order_by(self, raw: str) -> list[str]:
        keys = [k.strip() for k in raw.split(",") if k.strip()] or list(self.default)
        unknown = [k for k in keys if k.lstrip("-") not in self.ordering]
        if unknown:
            raise ValueError(f"unknown ordering key{'s' if len(unknown) > 1 else ''} "
                             f"{', '.join(map(repr, unknown))}; one of: "
                             f"{', '.join(self.ordering)} (prefix - for descending)")
        fields = [("-" if k.startswith("-") else "") + self.ordering[k.lstrip("-")]
                  for k in keys]
        tie = self.tie_breaker_field or self.ordering.get(self.tie_breaker, self.tie_breaker)
        if not any(f.lstrip("-") == tie for f in fields):
            fields.append(tie)
        return fields

    def parameters(self) -> list[OpenApiParameter]:
        parameters = [f.openapi() for f in self.filters]
        if self.ordering:
            parameters.append(OpenApiParameter(
                "ordering", OpenApiTypes.STR, OpenApiParameter.QUERY,
                description=(
                    f"comma-separated keys, - for descending: {', '.join(self.ordering)}. "
                    f"Default: {','.join(self.default) or self.tie_breaker}. Rows that tie "
                    f"are ordered by {self.tie_breaker} (the unique tie-breaker appended to "
                    "every ordering), so pages never overlap.")))
        return parameters

    def names(self) -> Iterable[str]:
        return [f.name for f in self.filters]


def query_params(view) -> Mapping[str, str]:
    """The request's query parameters, one value each (the last, as Django's ``get``)."""
    return dict(view.request.query_params.items())
