"""Circuit breakers around GitHub, advisory downloads and Redis (issue 12).

GitHub and the OSV feed are played by a local HTTP server (the only parts we cannot reach);
the forge adapter, the download code and the breakers are the real ones.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from apps.advisories.osv.sources import OSV_BREAKER, RecordError, iter_source
from apps.core.breakers import BREAKERS
from apps.reviews.forge.adapter import FORGE_BREAKER, GuardedForge
from apps.reviews.forge.github import ForgeError, GitHubForge
from tests.helpers import closed_port


class _Answer(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as GitHub: requests' pool reuses it
    status = 503
    requests: list[str]

    def _answer(self):
        type(self).requests.append(f"{self.command} {self.path}")
        self.rfile.read(int(self.headers.get("Content-Length") or 0))  # the next request follows
        body = json.dumps({"message": "played by the test"}).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_PATCH = do_POST = do_DELETE = _answer

    def log_message(self, *args):
        pass


@pytest.fixture
def answering():
    """A local server answering every request with ``status``; yields (url, handler)."""
    servers = []

    def start(status: int):
        handler = type("Handler", (_Answer,), {"status": status, "requests": []})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}", handler

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _merge(api_url: str) -> ForgeError:
    # A forge per call, as the services make one per decision (and PyGithub spaces the
    # writes of one client a second apart).
    forge = GuardedForge(GitHubForge(token="t0ken", repository="octo/app", api_url=api_url,
                                     timeout=5))
    with pytest.raises(ForgeError) as error:
        forge.merge_pull_request(number=7, expected_head_sha="a" * 40, commit_title="merge")
    return error.value


def test_forge_outages_open_the_breaker_and_it_refuses_without_calling(answering, settings):
    url, handler = answering(502)
    for _ in range(settings.BREAKER_FORGE_FAILURES):
        assert _merge(url).status == 502
    assert FORGE_BREAKER.state == "open"
    calls = len(handler.requests)
    refused = _merge(url)
    assert len(handler.requests) == calls  # GitHub was not asked again
    assert "treated as down" in str(refused) and refused.status is None


def test_forge_answers_in_4xx_never_open_it(answering, settings):
    url, handler = answering(405)  # "Pull Request is not mergeable"
    for _ in range(settings.BREAKER_FORGE_FAILURES + 3):
        assert _merge(url).status == 405
    assert FORGE_BREAKER.state == "closed"
    assert len(handler.requests) == settings.BREAKER_FORGE_FAILURES + 3


def test_an_unreachable_forge_counts_as_an_outage(settings):
    url = f"http://127.0.0.1:{closed_port()}"
    for _ in range(settings.BREAKER_FORGE_FAILURES):
        assert "unreachable" in str(_merge(url))
    assert FORGE_BREAKER.state == "open"


def test_an_advisory_feed_that_is_down_is_skipped_after_the_threshold(answering, settings):
    url, handler = answering(503)
    for _ in range(settings.BREAKER_OSV_FAILURES):
        (item,) = list(iter_source(f"{url}/all.zip", timeout=5))
        assert isinstance(item, RecordError) and "HTTP 503" in item.reason
    (skipped,) = list(iter_source(f"{url}/all.zip", timeout=5))
    assert isinstance(skipped, RecordError)
    assert "download skipped" in skipped.reason
    assert len(handler.requests) == settings.BREAKER_OSV_FAILURES
    assert OSV_BREAKER.state == "open"


def test_a_missing_feed_file_is_an_answer_not_an_outage(answering, settings):
    url, handler = answering(404)
    for _ in range(settings.BREAKER_OSV_FAILURES + 1):
        (item,) = list(iter_source(f"{url}/missing.json", timeout=5))
        assert "HTTP 404" in item.reason
    assert OSV_BREAKER.state == "closed"


@pytest.mark.django_db
def test_breakers_show_in_health_and_metrics(client, admin_user, settings, answering):
    url, _ = answering(503)
    for _ in range(settings.BREAKER_OSV_FAILURES):
        list(iter_source(f"{url}/all.zip", timeout=5))
    components = client.get("/health/components").json()["components"]
    assert components["circuit.osv"]["status"] == "degraded"
    assert components["circuit.forge"]["status"] == "healthy"
    client.force_login(admin_user)
    metrics = client.get("/metrics").content.decode()
    assert 'immune_circuit_breaker_state{breaker="osv"} 2.0' in metrics
    assert 'immune_circuit_breaker_state{breaker="forge"} 0.0' in metrics
    assert 'immune_circuit_breaker_failures_total{breaker="osv"} ' in metrics
    assert set(BREAKERS) >= {"broker", "forge", "osv", "evidence"}
