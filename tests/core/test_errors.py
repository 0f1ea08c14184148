"""One error format for the whole API."""

import pytest
from rest_framework.test import APIRequestFactory

from apps.core.errors import ConflictError
from apps.core.exceptions import api_exception_handler


def assert_error_shape(body, code):
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]


@pytest.mark.django_db
def test_unauthenticated_api_call_is_401_in_the_error_format(client):
    response = client.get("/api/v1/me/")
    assert response.status_code == 401
    assert_error_shape(response.json(), "not_authenticated")


@pytest.mark.django_db
def test_validation_error_lists_the_fields(client):
    response = client.post(
        "/api/v1/auth/token/", {"username": "x"}, content_type="application/json"
    )
    assert response.status_code == 400
    body = response.json()
    assert_error_shape(body, "validation_error")
    assert "password" in body["error"]["details"]


@pytest.mark.django_db
def test_token_login_and_me(client, reviewer):
    reviewer.set_password("a-strong-Passw0rd!")
    reviewer.save()
    response = client.post(
        "/api/v1/auth/token/", {"username": "rita", "password": "a-strong-Passw0rd!"},
        content_type="application/json",
    )
    assert response.status_code == 200
    token = response.json()["token"]
    me = client.get("/api/v1/me/", HTTP_AUTHORIZATION=f"Token {token}").json()
    assert me == {"username": "rita", "roles": ["reviewers"], "is_staff": True}


@pytest.mark.django_db
def test_token_login_is_rate_limited(client, settings):
    responses = [
        client.post("/api/v1/auth/token/", {"username": "x", "password": "y"},
                    content_type="application/json")
        for _ in range(12)
    ]
    codes = [r.status_code for r in responses]
    assert codes[:10] == [400] * 10
    assert codes[-1] == 429
    assert responses[-1]["Retry-After"] == "60"  # every 429 says when to come back
    assert responses[-1].json()["error"]["code"] == "throttled"


@pytest.mark.django_db
def test_admin_login_is_rate_limited(client):
    responses = [client.post("/admin/login/", {"username": "x", "password": "y"})
                 for _ in range(11)]
    codes = [r.status_code for r in responses]
    assert codes[:10] == [200] * 10  # the form again, with an error
    assert codes[10] == 429
    assert responses[10]["Retry-After"] == "60"


def test_application_error_keeps_code_status_and_details():
    request = APIRequestFactory().post("/api/v1/x")
    exc = ConflictError("Decided meanwhile by leo.", details={"decided_by": "leo"})
    response = api_exception_handler(exc, {"request": request})
    assert response.status_code == 409
    assert response.data == {"error": {"code": "conflict", "message": "Decided meanwhile by leo.",
                                       "details": {"decided_by": "leo"}}}


def test_unexpected_exception_is_500_without_internals():
    response = api_exception_handler(RuntimeError("password=hunter2"), {})
    assert response.status_code == 500
    assert "hunter2" not in str(response.data)
    assert response.data["error"]["code"] == "server_error"


@pytest.mark.django_db
def test_unknown_api_path_is_json_404_when_debug_is_off(client, settings):
    settings.DEBUG = False
    response = client.get("/api/v1/no-such-thing/")
    assert response.status_code == 404
    assert_error_shape(response.json(), "not_found")
