"""The OpenAPI schema builds cleanly; /metrics is gated and exports our metrics."""

import io

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_schema_builds_without_warnings_and_validates(tmp_path):
    target = tmp_path / "schema.yaml"
    # --fail-on-warn turns every drf-spectacular warning into a failure
    call_command("spectacular", "--fail-on-warn", "--validate", "--file", str(target),
                 stdout=io.StringIO(), stderr=io.StringIO())
    text = target.read_text()
    assert "openapi: 3" in text
    assert "/api/v1/me/" in text


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/schema/", "/api/docs/", "/api/redoc/"])
def test_api_docs_are_served_with_local_assets(client, reviewer, path):
    client.force_login(reviewer)  # behind login since issue 13 (tests/core/test_api_security.py)
    response = client.get(path)
    assert response.status_code == 200
    if path != "/api/schema/":
        html = response.content.decode()
        assert "drf_spectacular_sidecar" in html
        assert "cdn.jsdelivr" not in html


@pytest.mark.django_db
def test_metrics_need_staff_or_token(client, reviewer, django_user_model, settings):
    assert client.get("/metrics").status_code == 401
    settings.METRICS_TOKEN = "scrape-token-0123456789"
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    body = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-token-0123456789")
    assert body.status_code == 200
    text = body.content.decode()
    assert "django_http_requests_total_by_method_total" in text
    assert "django_db_execute_total" in text or "django_db_new_connections_total" in text
    client.force_login(reviewer)  # staff
    assert client.get("/metrics").status_code == 200
