"""Check API responses against the OpenAPI schema the project serves (drf-spectacular's),
with schemathesis' response validation: the status code is documented for the operation,
the content type is the documented one, and the body validates against its schema."""

from __future__ import annotations

import functools
import json
from urllib.parse import urlsplit

import requests
import schemathesis
from schemathesis.core.transport import Response


@functools.cache
def raw_schema() -> dict:
    from drf_spectacular.generators import SchemaGenerator

    # Through JSON: the generator's dict holds lazy strings and enums jsonschema cannot read.
    return json.loads(json.dumps(SchemaGenerator().get_schema(request=None, public=True),
                                 default=str))


def _closed(node):
    """The schema with every object that lists its properties closed to others, so a field
    an answer has and the schema lacks fails the check (JSON Schema allows it otherwise)."""
    if isinstance(node, dict):
        node = {k: _closed(v) for k, v in node.items()}
        if node.get("type") == "object" and "properties" in node \
                and "additionalProperties" not in node:
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [_closed(v) for v in node]
    return node


@functools.cache
def api_schema():
    return schemathesis.openapi.from_dict(_closed(raw_schema()))


def operation_for(method: str, url: str):
    path = urlsplit(url).path
    operation = api_schema().find_operation_by_path(method.upper(), path)
    if operation is None:
        raise AssertionError(f"{method.upper()} {path} is not in the schema")
    return operation


def assert_error_body(content: bytes) -> None:
    """The body is the schema's ``Error`` (for answers no operation documents: a route or a
    method the API does not have)."""
    import jsonschema

    schema = {**_closed(raw_schema()), "$ref": "#/components/schemas/Error"}
    jsonschema.validate(json.loads(content), schema)


def assert_conforms(method: str, url: str, status: int, headers, content: bytes) -> None:
    """AssertionError naming the operation and what does not conform."""
    path = urlsplit(url).path
    if status in (404, 405) and api_schema().find_operation_by_path(method.upper(),
                                                                    path) is None:
        assert_error_body(content)
        return
    operation = operation_for(method, url)
    request = requests.Request(method.upper(), url if "://" in url
                               else f"http://testserver{url}").prepare()
    response = Response(status_code=status,
                        headers={k.lower(): [v] for k, v in dict(headers).items()},
                        content=content, request=request, elapsed=0.0, verify=True)
    try:
        operation.validate_response(response)
    except Exception as exc:  # schemathesis raises its own failure groups
        raise AssertionError(f"{method.upper()} {url} → {status} does not conform to the "
                             f"schema: {exc}\n{content[:2000]!r}") from exc


def conforming(response, method: str, url: str):
    """A Django test client response, checked; returned for chaining."""
    assert_conforms(method, url, response.status_code, response.headers.items(),
                    response.content)
    return response
