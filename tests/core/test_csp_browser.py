"""The Content-Security-Policy in a real browser: no page of the console, the admin or the
API docs breaks under it (issue 13).

Debian's Chromium (driven by Playwright) opens each page of a live server (pytest-django's,
with static files) as a lead, collects every ``securitypolicyviolation`` event and every
console message about the policy, and checks that the page's own scripts ran: the queue's
live-update script, Swagger UI and ReDoc render, the A/B chart is drawn.
"""

from __future__ import annotations

import contextlib

import pytest
from django.test import Client

from tests.core.test_api_security import apv as apv  # noqa: F401 (the fixture, reused)
from tests.e2e.test_console_browser import CHROMIUM, CHROMIUM_ARGS, _need_browser

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

RECORD_VIOLATIONS = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => window.__csp.push(
  `${e.violatedDirective} blocked ${e.blockedURI || "inline"} (${e.sourceFile}:${e.lineNumber})`));
"""

#: Page, and a selector that exists only once the page's scripts have run.
PAGES = [
    ("/admin/", "#content"),
    ("/admin/reviews/apv/", "#immune-live[data-live]"),
    ("/admin/reviews/apv/{apv}/change/", "#immune-live[data-live]"),
    ("/admin/ab_testing/abtestresult/", "#content"),
    ("/admin/ml/modelversion/", "#content"),
    ("/admin/advisories/advisory/", "#changelist-filter, #changelist"),
    ("/admin/auth/user/add/", "#user_form"),
    ("/api/docs/", ".swagger-ui .info .title"),
    ("/api/redoc/", "[role=navigation], .menu-content"),
]


@contextlib.contextmanager
def chromium():
    # Started after the test's own database work: Playwright's sync API runs an event loop
    # in this thread, where Django then refuses ORM calls.
    _need_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.mark.django_db(transaction=True)
def test_no_csp_violation_on_any_page(live_server, apv, django_user_model):  # noqa: F811
    admin = django_user_model.objects.create_superuser("csp-admin", "a@example.org", "x")
    client = Client()
    client.force_login(admin)
    apv_pk = apv.pk
    with chromium() as browser:
        violations = _visit_every_page(browser, live_server.url, client, apv_pk)
    assert not violations, violations


def _visit_every_page(browser, base: str, client: Client, apv_pk: int) -> dict[str, list]:
    context = browser.new_context()
    context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value,
                          "url": base}])
    context.add_init_script(RECORD_VIOLATIONS)
    page = context.new_page()
    messages: list[str] = []
    page.on("console", lambda m: messages.append(m.text) if "Content Security Policy" in
            m.text or "Content-Security-Policy" in m.text else None)
    violations = {}
    for path, ready in PAGES:
        path = path.format(apv=apv_pk)
        response = page.goto(base + path)
        assert response.status == 200, path
        assert "script-src 'self'" in response.headers["content-security-policy"]
        page.wait_for_selector(ready, timeout=15_000)
        page.wait_for_timeout(300)  # late violations (workers, lazy styles) arrive too
        found = page.evaluate("window.__csp") + messages
        messages.clear()
        if found:
            violations[path] = found
    return violations
