"""The API's JSON parser: bounded, and no control characters in strings (issue 13).

DRF's ``JSONParser`` reads the stream to its end and lets ``RecursionError`` (``[[[[…``)
escape as a 500; PostgreSQL refuses NUL in text. This parser reads at most
``API_MAX_BODY_BYTES`` (a body without a ``Content-Length`` is not seen by the guard
middleware), refuses deep nesting, and refuses C0 control characters other than tab, line
feed and carriage return in any string or key.
"""

from __future__ import annotations

import codecs
import re
from typing import Any

from django.conf import settings
from rest_framework import exceptions, status
from rest_framework.parsers import JSONParser
from rest_framework.utils import json

#: C0 controls other than \t, \n and \r: a justification may have lines, never a NUL.
FORBIDDEN_IN_STRINGS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
#: No request of this API nests deeper than a handful of levels.
MAX_DEPTH = 64


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "request_too_large"


def _check(value: Any) -> str | None:
    """The first problem in a parsed document, walking it without recursion."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return f"nested deeper than {MAX_DEPTH} levels"
        if isinstance(item, str):
            if FORBIDDEN_IN_STRINGS.search(item):
                return "a string holds a control character"
        elif isinstance(item, dict):
            for key, child in item.items():
                if FORBIDDEN_IN_STRINGS.search(key):
                    return "a key holds a control character"
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return None


class StrictJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.API_MAX_BODY_BYTES
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise RequestTooLarge(f"The request body is larger than {limit} bytes.")
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = codecs.decode(raw, encoding)
            data = json.loads(text, parse_constant=json.strict_constant if self.strict else None)
        except RecursionError as exc:
            raise exceptions.ParseError(f"JSON parse error - nested deeper than {MAX_DEPTH} "
                                        "levels") from exc
        except ValueError as exc:  # invalid JSON, or bytes that are not the declared encoding
            raise exceptions.ParseError(f"JSON parse error - {exc}") from exc
        if problem := _check(data):
            raise exceptions.ParseError(f"JSON parse error - {problem}")
        return data
