"""Pages and API against a hostile tester (issue 13): links, CSP, docs login, proxies."""

from __future__ import annotations

import json

import pytest
from django.template import Context, Template
from rest_framework.authtoken.models import Token
from rest_framework.test import APIRequestFactory

from apps.advisories.services import advisories_import
from apps.core.proxies import client_address
from apps.decisions.models import DecisionAudit
from apps.inventory.services import project_add, project_scan
from apps.reviews.models import APV
from apps.reviews.services.patches import patches_propose
from tests.factories import make_repo

pytestmark = pytest.mark.django_db

HOSTILE_REFERENCES = [
    {"type": "WEB", "url": "javascript:alert(document.cookie)"},
    {"type": "WEB", "url": " JaVaScRiPt:alert(1)"},
    {"type": "WEB", "url": "java\tscript:alert(2)"},
    {"type": "WEB", "url": "data:text/html,<script>alert(3)</script>"},
    {"type": "ADVISORY", "url": "https://example.org/advisory?a=1&b=2"},
]


@pytest.fixture
def apv(tmp_path):
    """A real APV: an OSV record with hostile references, imported, and a scanned project."""
    feed = tmp_path / "feed"
    feed.mkdir()
    record = {
        "id": "PYSEC-2099-1", "modified": "2024-01-01T00:00:00Z", "summary": "PyYAML flaw",
        "affected": [{"package": {"ecosystem": "PyPI", "name": "PyYAML"},
                      "ranges": [{"type": "ECOSYSTEM",
                                  "events": [{"introduced": "0"}, {"fixed": "5.4"}]}]}],
        "references": HOSTILE_REFERENCES,
    }
    (feed / "PYSEC-2099-1.json").write_text(json.dumps(record))
    advisories_import(sources=[str(feed)], source_name="test")
    repo = make_repo(tmp_path / "repo", {"requirements.txt": "PyYAML==5.3.1\n"})
    project = project_scan(project=project_add(name="svc", path=str(repo))).project
    patches_propose(project=project)  # awaiting review: decisions can be recorded
    return APV.objects.get(advisory__osv_id="PYSEC-2099-1")


# --- Only http(s) URLs become links ---------------------------------------------------------
def test_the_apv_page_links_only_http_references(client, reviewer, apv):
    client.force_login(reviewer)
    page = client.get(f"/admin/reviews/apv/{apv.pk}/change/").content.decode()
    assert 'href="javascript' not in page.lower()
    assert 'href="data:' not in page and 'href=" javascript' not in page.lower()
    assert "javascript:alert(document.cookie)" in page  # still shown, as text
    assert "data:text/html,&lt;script&gt;" in page  # escaped, never markup
    assert ('<a href="https://example.org/advisory?a=1&amp;b=2" rel="noopener noreferrer" '
            'target="_blank">') in page


@pytest.mark.parametrize(("url", "linked"), [
    ("https://github.com/pypa/advisory-database", True),
    ("http://example.org", True),
    ("javascript:alert(1)", False), ("JAVASCRIPT:alert(1)", False),
    ("  javascript:alert(1)", False), ("java\nscript:alert(1)", False),
    ("vbscript:msgbox", False), ("data:text/html,x", False), ("//evil.example/x", False),
    ("https:///nohost", False), ("ftp://example.org/x", False), ("", False), (None, False),
])
def test_external_link_and_safe_url(url, linked):
    rendered = Template("{% load immune_links %}{{ u|external_link }}|{{ u|safe_url }}").render(
        Context({"u": url}))
    link, _, bare = rendered.partition("|")
    assert link.startswith("<a href=") is linked
    assert bool(bare) is linked


# --- Content-Security-Policy ----------------------------------------------------------------
@pytest.mark.parametrize("path", ["/admin/login/", "/api/v1/me/", "/health/live"])
def test_every_response_carries_a_content_security_policy(client, path):
    policy = client.get(path)["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["script-src"] == "'self'"  # no 'unsafe-inline', no 'unsafe-eval'
    assert directives["object-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["default-src"] == "'self'"


def test_console_and_docs_pages_have_no_inline_script(client, reviewer, apv):
    client.force_login(reviewer)
    for path in ["/admin/", "/admin/reviews/apv/", f"/admin/reviews/apv/{apv.pk}/change/",
                 "/api/docs/", "/api/redoc/"]:
        page = client.get(path).content.decode()
        assert "<script>" not in page and "<script type=\"text/javascript\">" not in page, path
        assert " onclick=" not in page and "fonts.googleapis" not in page, path


# --- The schema and the docs need a login -----------------------------------------------------
def test_schema_and_docs_need_a_login(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert client.get("/api/schema/").status_code == 401  # YAML, the schema's default
    for path in ["/api/docs/", "/api/redoc/"]:
        response = client.get(path)
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/?next=")


def test_schema_with_a_token_or_a_session(client, reviewer):
    token = Token.objects.create(user=reviewer)
    response = client.get("/api/schema/", HTTP_AUTHORIZATION=f"Token {token.key}")
    assert response.status_code == 200
    assert b"/api/v1/apvs/" in response.content
    client.force_login(reviewer)
    assert client.get("/api/schema/").status_code == 200
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    script = client.get("/api/docs/?script=")  # Swagger UI's start-up, as a file
    assert script.status_code == 200 and b"SwaggerUIBundle" in script.content


# --- X-Forwarded-For is believed from TRUSTED_PROXIES only ------------------------------------
def _login_attempts(client, forwarded_for: list[str], **extra):
    return [client.post("/api/v1/auth/token/", {"username": "nobody", "password": "x"},
                        HTTP_X_FORWARDED_FOR=xff, **extra).status_code
            for xff in forwarded_for]


def test_rotating_forwarded_for_through_an_untrusted_hop_is_still_limited(client, settings):
    settings.TRUSTED_PROXIES = []
    statuses = _login_attempts(client, [f"198.51.100.{i}" for i in range(12)])
    assert statuses[:10] == [400] * 10  # wrong password, counted against 127.0.0.1
    assert statuses[10:] == [429, 429]


def test_a_loopback_peer_is_not_trusted_by_default(client, settings):
    assert settings.TRUSTED_PROXIES == []
    statuses = _login_attempts(client, [f"198.51.100.{i}" for i in range(11)])
    assert statuses[-1] == 429


def test_through_a_trusted_proxy_the_forwarded_address_is_used(client, settings):
    settings.TRUSTED_PROXIES = ["127.0.0.1", "10.0.0.0/8"]
    # Each forwarded client has a counter of its own: none of these is limited...
    assert 429 not in _login_attempts(client, [f"198.51.100.{i}" for i in range(12)])
    # ...one client is limited however its request reaches us, and whatever it prepends.
    statuses = _login_attempts(client, [f"203.0.113.{i}, 192.0.2.7, 10.1.2.3"
                                        for i in range(11)])
    assert statuses[-1] == 429


def test_drf_throttles_key_on_the_same_address(settings):
    from apps.core.proxies import TrustedProxyMiddleware
    from apps.core.throttling import AnonRateThrottle

    def ident(xff: str) -> str:
        request = APIRequestFactory().get("/", HTTP_X_FORWARDED_FOR=xff)
        TrustedProxyMiddleware(lambda r: None)(request)
        return AnonRateThrottle().get_ident(request)

    settings.TRUSTED_PROXIES = []
    assert {ident("198.51.100.1"), ident("198.51.100.2")} == {"127.0.0.1"}
    settings.TRUSTED_PROXIES = ["127.0.0.1"]
    assert ident("spoofed, 198.51.100.1") == "198.51.100.1"


@pytest.mark.parametrize(("trusted", "recorded"), [([], "127.0.0.1"),
                                                   (["127.0.0.1"], "192.0.2.9")])
def test_audit_rows_record_the_same_address(client, reviewer, apv, settings, trusted, recorded):
    settings.TRUSTED_PROXIES = trusted
    token = Token.objects.create(user=reviewer)
    decide = {"decision": "escalate", "justification": "needs a second pair of eyes",
              "patch_revision": 1}
    response = client.post(f"/api/v1/apvs/{apv.code}/decisions/", decide,
                           content_type="application/json",
                           HTTP_X_FORWARDED_FOR="198.51.100.66, 192.0.2.9",
                           HTTP_AUTHORIZATION=f"Token {token.key}")
    assert response.status_code == 201, response.content
    assert DecisionAudit.objects.get(decision__apv=apv).client_ip == recorded


@pytest.mark.parametrize(("peer", "xff", "trusted", "client"), [
    ("127.0.0.1", "1.1.1.1", [], "127.0.0.1"),
    ("127.0.0.1", "1.1.1.1, 2.2.2.2", ["127.0.0.1"], "2.2.2.2"),
    ("10.0.0.5", "1.1.1.1, 10.0.0.9", ["10.0.0.0/8"], "1.1.1.1"),
    ("10.0.0.5", "10.0.0.7, 10.0.0.9", ["10.0.0.0/8"], "10.0.0.7"),
    ("192.0.2.1", "1.1.1.1", ["10.0.0.0/8"], "192.0.2.1"),
    ("::1", "[2001:db8::1]:443", ["::1"], "2001:db8::1"),
    ("127.0.0.1", "1.1.1.1:8080, 2.2.2.2", ["*"], "1.1.1.1"),
])
def test_client_address_follows_uvicorns_rule(settings, peer, xff, trusted, client):
    settings.TRUSTED_PROXIES = trusted
    assert client_address(peer, xff) == client


def test_a_request_without_a_peer_address_is_limited_not_a_500(client):
    """uvicorn on a unix socket gives no client address; django-ratelimit raised on it (500,
    found by schemathesis, whose WSGI client sends no REMOTE_ADDR)."""
    statuses = [client.post("/api/v1/auth/token/", {"username": "a", "password": "b"},
                            REMOTE_ADDR="").status_code for _ in range(11)]
    assert statuses == [400] * 10 + [429]
