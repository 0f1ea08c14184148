"""The review console in a real browser (Debian's Chromium driven by Playwright).

A live ASGI server (runserver from daphne: HTTP, static files and WebSockets) runs in its
own process on its own database and data folder, loaded with the demo. Two reviewers work
in two browser contexts: one approves an APV through the detail page, the other watches it
leave their queue without reloading, and the demo repository's default branch gets the merge.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import ROOT, free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PASSWORD = "e2e-Reviewer-Passw0rd!"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]  # the set-up runs the demo


def _need_browser():
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package")
    if not Path(CHROMIUM).exists():
        missing.append(CHROMIUM)
    if missing:
        message = "browser tests need " + " and ".join(missing)
        if os.environ.get("IMMUNE_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)


def _database_url(tmp_path: Path) -> str:
    """A fresh database for the server: PostgreSQL when the suite runs on it, else SQLite.
    Named after the test database, so concurrent runs (and xdist workers) keep apart."""
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql://")):
        import psycopg
        from django.db import connection

        base, _, _name = url.rpartition("/")
        name = f"{connection.settings_dict['NAME']}_e2e"
        with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"{base}/{name}"
    return f"sqlite:///{tmp_path / 'e2e.sqlite3'}"


def _manage(env, *args, stdin: str | None = None):
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, input=stdin,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def server(tmp_path_factory, demo_template):
    _need_browser()
    tmp = tmp_path_factory.mktemp("e2e")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update({"IMMUNE_DATA_DIR": str(tmp), "DATABASE_URL": _database_url(tmp),
                "DJANGO_ENV": "development", "DEBUG": "true", "LOG_LEVEL": "WARNING",
                # Its own queue on the shared Redis: only this module's worker takes it.
                "CELERY_TASK_DEFAULT_QUEUE": f"immune-e2e-{os.getpid()}"})
    _manage(env, "migrate", "--noinput")
    # The demo's real wargames, model and A/B report, so the pages show them: its run is
    # shared by the session (tests/conftest.py); its rows are loaded here and its
    # repositories copied into this server's data folder.
    rows, _output = demo_template.copy(tmp, wargame=True)
    _manage(env, "loaddata", str(rows))
    _manage(env, "create_reviewer", "rita", "--password-stdin", stdin=PASSWORD + "\n")
    _manage(env, "create_reviewer", "leo", "--lead", "--password-stdin", stdin=PASSWORD + "\n")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health/live", timeout=2) as response:  # noqa: S310
                if response.status == 200:
                    break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail("server did not start:\n" + (process.stdout.read() or "")[-3000:])
            time.sleep(0.3)
    # With a broker, as in production, a worker carries out what the console decides (a
    # merge is step two of a decision, after commit); without one tasks run in the server.
    worker = None
    if os.environ.get("REDIS_URL"):
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "immune", "worker", "--pool", "solo",
             "-Q", env["CELERY_TASK_DEFAULT_QUEUE"], "--without-heartbeat",
             "--without-gossip", "--without-mingle", "-l", "warning"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    yield {"url": url, "repo": tmp / "repos" / "demo", "env": env}
    if worker is not None:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def login(browser, server, username):
    context = browser.new_context(viewport={"width": 1680, "height": 1000})
    page = context.new_page()
    page.goto(f"{server['url']}/admin/login/?next=/admin/reviews/apv/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#result_list")
    page.wait_for_selector("#live-state.is-live")
    return context, page


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          check=True).stdout


def test_approve_in_the_browser_merges_and_the_other_queue_updates_live(browser, server):
    rita_context, rita = login(browser, server, "rita")
    leo_context, leo = login(browser, server, "leo")
    screenshots = os.environ.get("IMMUNE_SCREENSHOTS")
    if screenshots:
        rita.screenshot(path=str(Path(screenshots) / "queue.png"))

    row = rita.locator("#result_list tr", has_text="PyYAML 5.3.1")
    code = row.locator("a.apv-code").inner_text()
    assert leo.locator(f'a.apv-code[data-apv="{code}"]').count() == 1
    row.locator("a.apv-code").click()
    rita.wait_for_selector("text=PYSEC-2021-142")
    assert rita.locator(".immune-diff").inner_text().count("PyYAML==5.4") == 1
    if screenshots:
        rita.screenshot(path=str(Path(screenshots) / "detail.png"), full_page=True)

    # leo opens the same APV: rita's page shows who else has it open
    leo_detail = leo_context.new_page()
    leo_detail.goto(rita.url)
    # A locator assertion, not wait_for_function: Playwright polls a string predicate with
    # eval inside the page, which the console's Content-Security-Policy rightly refuses.
    from playwright.sync_api import expect

    expect(rita.locator("#presence")).to_contain_text("leo", timeout=10_000)
    leo_detail.close()

    rita.click("a.decide-approve")
    rita.fill("#id_justification", "Changelog read; the full_load fix is what we need.")
    rita.click("input[name=confirm]")
    message = rita.wait_for_selector("ul.messagelist li.success").inner_text()
    # Recorded at once; the merge is the worker's (with a broker) or done already (without).
    assert (f"{code}: Approve recorded; git and the forge act in the background" in message
            or f"{code}: Approve recorded (merged); now applied." in message), message

    # leo's queue drops the APV without a reload
    leo.wait_for_selector(f'a.apv-code[data-apv="{code}"]', state="detached", timeout=15_000)
    assert leo.evaluate("performance.getEntriesByType('navigation').length") == 1

    deadline = time.monotonic() + 60
    while not (merge := git(server["repo"], "log", "-1", "--merges", "--format=%s",
                            "main").strip()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert merge.startswith(f"Merge immune/{code}-r1")
    assert "PyYAML==5.4" in git(server["repo"], "show", "main:requirements.txt")
    rita_context.close()
    leo_context.close()


def test_reviewer_without_the_lead_role_cannot_accept_risk(browser, server):
    context, page = login(browser, server, "rita")
    page.locator("a.apv-code").first.click()
    page.wait_for_selector(".decision-buttons")
    assert page.locator("a.decide-accept_risk").count() == 0
    assert page.locator("a.decide-approve").count() == 1
    href = page.locator("a.decide-approve").get_attribute("href")
    page.goto(server["url"] + href.replace("/approve/", "/accept_risk/"))
    assert "Only leads may accept a risk." in page.locator("ul.messagelist").inner_text()
    context.close()


def test_prediction_and_ab_report_pages(browser, server):
    """An ML-routed APV shows its prediction and what drove it; the A/B report shows the
    confusion matrix and accuracy built from the demo's shadow wargames."""
    apv_id = _manage(server["env"], "shell", "-c", (
        "from apps.ml.models import Prediction\n"
        "p = Prediction.objects.filter(route='ml', patch__apvs__status='pending_review')"
        ".order_by('id').first()\n"
        "print(p.patch.apvs.first().pk)")).strip().splitlines()[-1]
    context, page = login(browser, server, "leo")
    page.goto(f"{server['url']}/admin/reviews/apv/{apv_id}/change/")
    prediction = page.wait_for_selector("p.prediction").inner_text()
    assert "P(effective)" in prediction and "Route: ML" in prediction
    assert page.locator("table.top-features tbody tr").count() >= 1
    screenshots = os.environ.get("IMMUNE_SCREENSHOTS")
    if screenshots:
        page.screenshot(path=str(Path(screenshots) / "prediction.png"), full_page=True)
    page.goto(f"{server['url']}/admin/ab_testing/abtestresult/")
    accuracy = page.wait_for_selector("#ab-accuracy").inner_text()
    assert "Accuracy" in accuracy and "95 % CI" in accuracy
    cells = [page.locator(f"#cm-{k}").inner_text() for k in ("tp", "fp", "fn", "tn")]
    total = sum(int(c.split()[1]) for c in cells)
    assert f"n = {total}" in accuracy and total > 0
    assert page.locator("svg.ab-chart circle").count() >= 1
    if screenshots:
        page.screenshot(path=str(Path(screenshots) / "ab_report.png"), full_page=True)
    context.close()


def test_chromium_is_the_system_browser():
    """Never a downloaded browser: the tests drive Debian's package."""
    _need_browser()
    assert shutil.which("chromium") == CHROMIUM
