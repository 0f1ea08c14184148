"""The request id comes back in the response and is bound into every log line."""

import io
import json
import logging

import pytest
import structlog

from immune.logconfig import SHARED_PROCESSORS


@pytest.fixture
def json_log():
    """Capture log lines through the configured formatter, rendered as JSON."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(),
            ],
            foreign_pre_chain=SHARED_PROCESSORS,
        )
    )
    root = logging.getLogger()
    root.addHandler(handler)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines() if line]
    root.removeHandler(handler)


@pytest.mark.django_db
def test_incoming_request_id_is_echoed_and_logged(client, json_log):
    response = client.get("/health", HTTP_X_REQUEST_ID="ci-run-42.step:7")
    assert response["X-Request-ID"] == "ci-run-42.step:7"
    finished = [e for e in json_log() if e["event"] == "request.finished"]
    assert finished and finished[-1]["request_id"] == "ci-run-42.step:7"
    assert finished[-1]["path"] == "/health"
    assert finished[-1]["status"] == 200


@pytest.mark.django_db
def test_missing_or_hostile_request_id_is_replaced(client):
    generated = client.get("/health")["X-Request-ID"]
    assert len(generated) == 32 and int(generated, 16) >= 0
    hostile = client.get("/health", HTTP_X_REQUEST_ID="a\r\nSet-Cookie: x=1")
    assert "Set-Cookie" not in hostile["X-Request-ID"]
    assert len(hostile["X-Request-ID"]) == 32
    assert client.get("/health")["X-Request-ID"] != generated


def test_stdlib_loggers_inside_a_request_carry_the_request_id(rf, json_log):
    """A library logging through the standard library gets the same context."""
    from django.http import HttpResponse

    from apps.core.middleware import RequestIdMiddleware

    def view(request):
        logging.getLogger("django.some.library").warning("library says hello")
        return HttpResponse("ok")

    RequestIdMiddleware(view)(rf.get("/anything", HTTP_X_REQUEST_ID="lib-1"))
    lines = [e for e in json_log() if e["event"] == "library says hello"]
    assert lines and lines[0]["request_id"] == "lib-1"
    assert lines[0]["logger"] == "django.some.library"
    assert lines[0]["level"] == "warning"
