"""A pytest plugin: every API response any test receives through Django's test client (and
DRF's ``APIClient``) is checked against the served OpenAPI schema (issue 19: "a test that
validates the responses of the whole API test suite against the schema").

Enabled for the whole suite in ``pyproject.toml`` (``-p tests.api.conformance``); a test
that sends something on purpose the schema cannot describe marks itself
``@pytest.mark.schema_exempt``. Responses outside ``/api/v1/`` (the admin, the schema
itself, health) are not checked.
"""

from __future__ import annotations

import pytest

_checking: list[bool] = [False]


def _check(response, path: str, method: str) -> None:
    from tests.api.schema_check import assert_conforms

    if _checking[0]:
        return
    _checking[0] = True  # building the schema must not check itself
    try:
        assert_conforms(method, path, response.status_code, response.headers.items(),
                        response.content)
    finally:
        _checking[0] = False


@pytest.fixture(autouse=True)
def _api_responses_conform(request, monkeypatch):
    if request.node.get_closest_marker("schema_exempt"):
        yield
        return
    from django.test.client import Client

    original = Client.request

    def checked(self, **environ):
        response = original(self, **environ)
        path = environ.get("PATH_INFO", "")
        if path.startswith("/api/v1/") and not getattr(response, "streaming", False):
            _check(response, path, environ.get("REQUEST_METHOD", "GET"))
        return response

    monkeypatch.setattr(Client, "request", checked)
    yield


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "schema_exempt: the test's API responses are not checked against the schema")
