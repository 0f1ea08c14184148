"""Hostile input is a 4xx in the error format, never a 500 (issue 13).

NUL and other control characters in a path, a query or a JSON string, bytes that are not
UTF-8, JSON that does not parse and bodies over ``API_MAX_BODY_BYTES``: each is refused
before it reaches a selector or the database (PostgreSQL refuses NUL in text, which was
the 500).
"""

from __future__ import annotations

import json

import pytest
from rest_framework.authtoken.models import Token

pytestmark = pytest.mark.django_db

#: Every GET operation with a free-text query parameter, and a path parameter of type string.
NUL_IN_QUERY = [
    ("/api/v1/advisories/", "search"),
    ("/api/v1/advisories/", "package"),
    ("/api/v1/advisories/", "alias"),
    ("/api/v1/apvs/", "package"),
    ("/api/v1/apvs/", "project"),
    ("/api/v1/apvs/stats/", "project"),
    ("/api/v1/decisions/", "search"),
    ("/api/v1/decisions/", "reviewer"),
    ("/api/v1/projects/", "search"),
    ("/api/v1/patches/", "search"),
    ("/api/v1/ml/models/", "search"),
    ("/api/v1/ab-testing/results", "search"),
]
NUL_IN_PATH = [
    "/api/v1/advisories/PYSEC-%00-1/",
    "/api/v1/apvs/APV-%00/",
    "/api/v1/apvs/APV-%00/decisions/",
]


@pytest.fixture
def api(client, lead):
    token = Token.objects.create(user=lead)
    client.defaults["HTTP_AUTHORIZATION"] = f"Token {token.key}"
    return client


def assert_error(response, status: int, code: str):
    assert response.status_code == status, response.content[:300]
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]


@pytest.mark.parametrize(("path", "param"), NUL_IN_QUERY)
def test_nul_in_a_query_is_a_400(api, path, param):
    assert_error(api.get(path, {param: "a\x00b"}), 400, "invalid_request")


@pytest.mark.parametrize("path", NUL_IN_PATH)
def test_nul_in_a_path_is_a_400(api, path):
    error = assert_error(api.get(path), 400, "invalid_request")
    assert error["details"] == {"where": "path"}


@pytest.mark.parametrize("query", ["q=%01", "search=a%0Db", "search=%7F", "search=%FF%FE",
                                   "%00=1"])
def test_control_characters_and_broken_utf8_in_a_query_are_400(api, query):
    error = assert_error(api.get(f"/api/v1/advisories/?{query}"), 400, "invalid_request")
    assert error["details"] == {"where": "query"}


def test_an_ordinary_query_still_works(api):
    response = api.get("/api/v1/advisories/", {"search": "café yaml", "package": "pyyaml"})
    assert response.status_code == 200


def test_pages_outside_the_api_get_a_plain_400(client, lead):
    client.force_login(lead)
    response = client.get("/admin/reviews/apv/", {"q": "\x00"})
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/plain")
    assert client.get("/admin/reviews/apv/%00/change/").status_code == 400


@pytest.mark.parametrize("value", ["a\x00b", "\x00", "x\x1by"])
def test_nul_or_control_characters_in_a_json_string_are_400(api, value):
    body = {"name": value, "path": "/tmp/nowhere", "default_branch": "main"}
    error = assert_error(api.post("/api/v1/projects/", json.dumps(body),
                                  content_type="application/json"), 400, "parse_error")
    assert "control character" in error["message"]
    # ... in a key too, and deep inside a structure
    nested = {"name": "ok", "path": "/tmp/x", "extra": [{"k\x00": 1}]}
    assert_error(api.post("/api/v1/projects/", json.dumps(nested),
                          content_type="application/json"), 400, "parse_error")


def test_newlines_and_tabs_in_json_strings_are_fine(api):
    body = {"name": "multi\nline\tname", "path": "/nonexistent/repo", "default_branch": "main"}
    response = api.post("/api/v1/projects/", json.dumps(body), content_type="application/json")
    assert response.status_code != 500
    assert "control character" not in response.content.decode()


@pytest.mark.parametrize("raw", [b"{", b'{"name": "\xff\xfe"}', b"[" * 100_000, b"\x00"])
def test_invalid_json_or_utf8_is_a_400(api, raw):
    response = api.post("/api/v1/projects/", raw, content_type="application/json")
    assert_error(response, 400, "parse_error")


def test_a_20_mb_json_body_is_413_without_being_read(api, settings):
    assert settings.API_MAX_BODY_BYTES == 1024 * 1024
    body = json.dumps({"name": "x" * (20 * 1024 * 1024), "path": "/tmp/x"})
    error = assert_error(api.post("/api/v1/projects/", body, content_type="application/json"),
                         413, "request_too_large")
    assert error["details"] == {"max_bytes": 1024 * 1024}


def test_an_oversize_form_outside_the_api_is_a_plain_413(client, settings):
    settings.API_MAX_BODY_BYTES = 1000
    response = client.post("/admin/login/", {"username": "x" * 5000, "password": "y"})
    assert response.status_code == 413
    assert response["Content-Type"].startswith("text/plain")


def test_a_bad_content_length_is_a_400(api):
    response = api.generic("POST", "/api/v1/projects/", b"{}", content_type="application/json",
                           CONTENT_LENGTH="-5")
    assert_error(response, 400, "invalid_request")
