"""Locust users for immune: console reviewers, REST readers, decision writers, WebSocket
listeners and a ``/health/live`` baseline.

Run through ``make load`` (``loadtests/run.py`` starts the production stack, seeds it and
runs Locust headless); by hand, against a stack seeded by ``loadtests/seed.py``::

    LOAD_CREDENTIALS=loadtests/reports/state/immune_load/credentials.json \
      .venv/bin/locust -f loadtests/locustfile.py --host http://127.0.0.1:8000 \
      --headless -u 100 -r 50 -t 60s ApiReader

User classes (pick by name on the command line): ``HealthUser``, ``ApiReader``,
``DecisionWriter``, ``ConsoleReviewer``, ``WebSocketListener``.

Environment:
- ``LOAD_CREDENTIALS``: the JSON written by ``loadtests/seed.py``.
- ``LOAD_WAIT``: think time between a user's requests, in seconds (``0``: a closed loop;
  ``1-3``: uniform between the two). Default 0.
- ``LOAD_WRITES_FILE``: where the decision writers' tally goes at the end (the APV codes
  answered 2xx), for ``run.py`` to check against the database.
- ``LOAD_TARGETS``: the writers' APVs (JSON list of [code, revision]); default: the seed's.
- ``LOAD_WS_PING_S``: seconds between a WebSocket listener's pings (default 30).

Each decision writer decides ``false_positive`` on APVs no other writer touches (one shared
queue of the seed's pending APVs): it is the one verdict that applies to its APV alone and
runs no git or forge action, so every 2xx must be exactly one Decision row. One POST in ten
is sent a second time with the same ``Idempotency-Key`` and must be answered as a replay.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import time
import uuid
from collections import deque
from pathlib import Path
from urllib.parse import urlparse

from locust import User, between, constant, events, task
from locust.contrib.fasthttp import FastHttpUser
from locust.exception import StopUser

ROOT = Path(__file__).resolve().parent.parent
CREDENTIALS = Path(os.environ.get(
    "LOAD_CREDENTIALS", ROOT / "loadtests" / "reports" / "state" / "immune_load"
    / "credentials.json"))
_credentials: dict | None = None


def credentials() -> dict:
    global _credentials
    if _credentials is None:
        if not CREDENTIALS.is_file():
            raise SystemExit(f"{CREDENTIALS} not found: run loadtests/seed.py (make load) first")
        _credentials = json.loads(CREDENTIALS.read_text())
    return _credentials


def think_time():
    raw = os.environ.get("LOAD_WAIT", "0").strip() or "0"
    if "-" in raw:
        low, high = (float(v) for v in raw.split("-", 1))
        return between(low, high)
    return constant(float(raw))


_counters: dict[str, itertools.count] = {}


def next_index(kind: str) -> int:
    """0, 1, 2, ... per kind of account: users spread over the seeded accounts."""
    return next(_counters.setdefault(kind, itertools.count()))


class HealthUser(FastHttpUser):
    """The baseline: the cheapest request the stack serves."""

    wait_time = think_time()

    @task
    def live(self):
        self.client.get("/health/live", name="/health/live")


class ApiReader(FastHttpUser):
    """A REST client with a token: the APV list (filtered) and an APV's detail mostly,
    the other read endpoints now and then."""

    wait_time = think_time()

    def on_start(self):
        tokens = credentials()["api_tokens"]
        self.headers = {"Authorization": f"Token {tokens[next_index('api') % len(tokens)]}",
                        "Accept": "application/json"}
        self.sample = credentials()["apv_sample"]
        self.projects = [p for p in credentials()["projects"] if p.startswith("loadgen-")]

    def _get(self, path: str, name: str):
        with self.client.get(path, headers=self.headers, name=name,
                             catch_response=True) as response:
            if response.status_code != 200:
                response.failure(_failure(response))

    @task(5)
    def apv_list(self):
        filters = random.choice([
            "?status=pending_review",
            "?status=pending_review&severity=critical,high",
            f"?project={random.choice(self.projects)}&ordering=-cvss_score",
            "?severity=medium&overdue=false",
            f"?project={random.choice(self.projects)}&status=pending_review&page=2",
        ])
        self._get(f"/api/v1/apvs/{filters}", "/api/v1/apvs/?[filters]")

    @task(5)
    def apv_detail(self):
        _pk, code = random.choice(self.sample)
        self._get(f"/api/v1/apvs/{code}/", "/api/v1/apvs/[code]/")

    @task(1)
    def apv_stats(self):
        self._get("/api/v1/apvs/stats/", "/api/v1/apvs/stats/")

    @task(1)
    def patches(self):
        self._get(f"/api/v1/patches/?project={random.choice(self.projects)}",
                  "/api/v1/patches/?project=")

    @task(1)
    def decisions(self):
        self._get("/api/v1/decisions/?decision=false_positive", "/api/v1/decisions/")

    @task(1)
    def projects_list(self):
        self._get("/api/v1/projects/", "/api/v1/projects/")

    @task(1)
    def apv_decisions(self):
        _pk, code = random.choice(self.sample)
        self._get(f"/api/v1/apvs/{code}/decisions/", "/api/v1/apvs/[code]/decisions/")

    @task(1)
    def advisories(self):
        self._get("/api/v1/advisories/", "/api/v1/advisories/")

    @task(1)
    def me(self):
        self._get("/api/v1/me/", "/api/v1/me/")


# --- decision writers ---------------------------------------------------------------------

_targets: deque | None = None
#: What the writers were answered, written to LOAD_WRITES_FILE when the test stops.
WRITES: dict[str, list] = {"sent": [], "created": [], "replayed": [], "failed": []}
#: APV code -> time.time() just before its decision was POSTed (for the WebSocket listeners).
DECISIONS_SENT: dict[str, float] = {}


def decision_targets() -> deque:
    """APVs (code, patch revision) awaiting review: ``LOAD_TARGETS`` (run.py writes the ones
    still pending before each phase), else the seed's list."""
    global _targets
    if _targets is None:
        source = os.environ.get("LOAD_TARGETS")
        targets = (json.loads(Path(source).read_text()) if source
                   else credentials()["decision_targets"])
        _targets = deque(tuple(t) for t in targets)
    return _targets


def _failure(response) -> str:
    """Status and error code (not the message, which names the APV: one row per kind)."""
    try:
        return f"{response.status_code} {response.json()['error']['code']}"
    except (ValueError, KeyError, TypeError):
        return f"{response.status_code}"


class DecisionWriter(FastHttpUser):
    """Decides ``false_positive`` through the REST API on APVs no other writer decides."""

    wait_time = think_time()

    def on_start(self):
        tokens = credentials()["writer_tokens"]
        self.token = tokens[next_index("writer") % len(tokens)]

    @task
    def decide(self):
        try:
            code, revision = decision_targets().popleft()
        except IndexError:
            raise StopUser() from None  # every seeded pending APV is decided
        key = str(uuid.uuid4())
        headers = {"Authorization": f"Token {self.token}", "Idempotency-Key": key}
        body = {"decision": "false_positive", "patch_revision": revision,
                "justification": "Load test: the generated package is not deployed."}
        DECISIONS_SENT[code] = time.time()
        WRITES["sent"].append(code)
        with self.client.post(f"/api/v1/apvs/{code}/decisions/", json=body, headers=headers,
                              name="/api/v1/apvs/[code]/decisions/ (POST)",
                              catch_response=True) as response:
            if response.status_code == 201 and not response.headers.get("Idempotent-Replayed"):
                WRITES["created"].append(code)
            else:
                WRITES["failed"].append([code, response.status_code])
                response.failure(_failure(response))
                return
        if random.random() < 0.1:
            with self.client.post(f"/api/v1/apvs/{code}/decisions/", json=body,
                                  headers=headers,
                                  name="/api/v1/apvs/[code]/decisions/ (POST replay)",
                                  catch_response=True) as response:
                if response.status_code == 201 and response.headers.get("Idempotent-Replayed"):
                    WRITES["replayed"].append(code)
                else:
                    WRITES["failed"].append([code, f"replay {response.status_code}"])
                    response.failure(f"replay not recognised: {_failure(response)}")


@events.test_stop.add_listener
def _write_tally(environment, **_kwargs):
    target = os.environ.get("LOAD_WRITES_FILE")
    if target and WRITES["sent"]:
        Path(target).write_text(json.dumps(WRITES))


# --- console reviewers --------------------------------------------------------------------

_CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


class ConsoleReviewer(FastHttpUser):
    """Logs into the console (the admin login form, with its CSRF token), then opens the
    review queue and APV detail pages.

    Production marks the session and CSRF cookies ``Secure``; this plain-HTTP client on
    loopback sends them itself, as the browser behind the TLS proxy would.
    """

    wait_time = think_time()

    def on_start(self):
        accounts = credentials()["reviewers"]
        self.account = accounts[next_index("reviewer") % len(accounts)]
        self.sample = credentials()["apv_sample"]
        self.cookies: dict[str, str] = {}
        self.login()

    def _remember_cookies(self):
        for cookie in self.client.cookiejar:
            self.cookies[cookie.name] = cookie.value
        self.client.cookiejar.clear()

    def _headers(self, **extra) -> dict:
        cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        return {"Cookie": cookie, **extra} if cookie else extra

    def login(self):
        with self.client.get("/admin/login/?next=/admin/reviews/apv/", name="/admin/login/ (GET)",
                             headers=self._headers(), catch_response=True) as response:
            self._remember_cookies()
            match = _CSRF_INPUT.search(response.text or "")
            if response.status_code != 200 or not match:
                response.failure(f"login form: {response.status_code}")
                raise StopUser()
        form = {"csrfmiddlewaretoken": match.group(1), "username": self.account["username"],
                "password": self.account["password"], "next": "/admin/reviews/apv/"}
        host = self.host.rstrip("/")
        with self.client.post("/admin/login/", data=_urlencode(form), name="/admin/login/ (POST)",
                              headers=self._headers(**{
                                  "Content-Type": "application/x-www-form-urlencoded",
                                  "Referer": f"{host}/admin/login/"}),
                              allow_redirects=False, catch_response=True) as response:
            self._remember_cookies()
            if response.status_code != 302 or credentials()["session_cookie_name"] \
                    not in self.cookies:
                response.failure(f"login refused: {response.status_code}")
                raise StopUser()

    def _page(self, path: str, name: str):
        with self.client.get(path, name=name, headers=self._headers(),
                             allow_redirects=False, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"{response.status_code}")

    @task(3)
    def queue(self):
        self._page("/admin/reviews/apv/", "/admin/reviews/apv/ (queue)")

    @task(1)
    def queue_page(self):
        self._page(f"/admin/reviews/apv/?p={random.randint(2, 20)}",
                   "/admin/reviews/apv/?p= (queue page)")

    @task(4)
    def detail(self):
        pk, _code = random.choice(self.sample)
        self._page(f"/admin/reviews/apv/{pk}/change/", "/admin/reviews/apv/[pk]/change/")


def _urlencode(form: dict) -> str:
    from urllib.parse import urlencode

    return urlencode(form)


# --- WebSocket listeners ------------------------------------------------------------------

class WebSocketListener(User):
    """Holds ``/ws/reviews/`` open, subscribed to decisions and APV updates (the session of
    a seeded reviewer, as a logged-in browser tab has). Reports as request events:
    ``WS connect`` (handshake to subscription), ``WS ping`` (ping to pong, every
    ``LOAD_WS_PING_S``) and ``WS decision.made`` (a writer's POST sent in this process to
    the event received here; only decisions made by this Locust's writers).

    Weighted 10 to a writer's 1, so a phase of ``DecisionWriter,WebSocketListener@110``
    has 100 listeners watching 10 writers."""

    wait_time = constant(0)
    weight = 10

    def on_start(self):
        from websockets.sync.client import connect

        sessions = credentials()["ws_sessions"]
        session = sessions[next_index("ws") % len(sessions)]
        parsed = urlparse(self.host)
        url = f"ws://{parsed.netloc}/ws/reviews/"
        cookie = f"{credentials()['session_cookie_name']}={session}"
        started = time.perf_counter()
        try:
            self.ws = connect(url, origin=f"http://{parsed.netloc}",
                              additional_headers={"Cookie": cookie}, open_timeout=30,
                              ping_interval=None, proxy=None)
            ack = json.loads(self.ws.recv(timeout=30))
            if ack.get("type") != "connection_ack":
                raise RuntimeError(f"expected connection_ack, got {ack}")
            self.ws.send(json.dumps({"type": "subscribe", "channels": ["decisions", "apvs"]}))
            while json.loads(self.ws.recv(timeout=30)).get("type") != "subscribed":
                pass
        except Exception as exc:  # noqa: BLE001 (any failure is the request's failure)
            self._fire("WS connect", started, exc)
            raise StopUser() from exc
        self._fire("WS connect", started)
        self.ping_every = float(os.environ.get("LOAD_WS_PING_S", "30"))

    def _fire(self, name: str, started: float, exception: Exception | None = None,
              response_time: float | None = None):
        self.environment.events.request.fire(
            request_type="WS", name=name, context={}, response=None, exception=exception,
            response_length=0,
            response_time=response_time if response_time is not None
            else (time.perf_counter() - started) * 1000)

    @task
    def listen(self):
        next_ping = time.monotonic() + self.ping_every
        ping_sent: float | None = None
        while True:
            timeout = max(0.0, next_ping - time.monotonic())
            try:
                raw = self.ws.recv(timeout=timeout)
            except TimeoutError:
                ping_sent = time.perf_counter()
                self.ws.send(json.dumps({"type": "ping", "ts": time.time()}))
                next_ping = time.monotonic() + self.ping_every
                continue
            except Exception as exc:  # noqa: BLE001 (a dropped connection is a failure)
                self._fire("WS closed", time.perf_counter(), exc)
                raise StopUser() from exc
            received = time.time()
            message = json.loads(raw)
            kind = message.get("type")
            if kind == "pong" and ping_sent is not None:
                self._fire("WS ping", ping_sent)
                ping_sent = None
            elif kind == "decision.made":
                sent = DECISIONS_SENT.get(message.get("data", {}).get("apv"))
                if sent is not None:
                    self._fire("WS decision.made", 0, response_time=(received - sent) * 1000)

    def on_stop(self):
        ws = getattr(self, "ws", None)
        if ws is not None:
            ws.close()
