"""docs/api.md's walk-through, as written, against a live server (issue 19's "Done when").

uvicorn runs the project in its own process on the test database (tasks in-process, as on
the embedded profile; the channel layer on Redis). The test reads the walk-through's
examples out of docs/api.md and sends them: a token, a list, the APV detail and the
decision (two calls decide), the decision followed, a wargame asked for and followed, and
the WebSocket joined with the token by the guide's own Python snippet. Every response is
checked against the schema the server serves. Then every error code docs/api.md lists is
produced once, through the live server except the two that need a fault in the server
itself (a bug, a broker outage), which are produced in this process.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from apps.decisions.services import IDEMPOTENCY_LOCK_SPACE
from apps.reviews.models import APV
from tests.api.schema_check import assert_conforms
from tests.factories import ROOT, git, make_repo
from tests.faults import uvicorn
from tests.helpers import closed_port, current_database_url

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.timeout(900)]

PASSWORD = "walk-through-Passw0rd"
GUIDE = ROOT / "docs" / "api.md"


def guide_section(title: str) -> str:
    text = GUIDE.read_text()
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def http_examples() -> list[dict]:
    """The walk-through's ```http blocks: request line (with the expected statuses after
    →), headers, then an optional JSON body."""
    examples = []
    for block in re.findall(r"```http\n(.*?)```", guide_section("Walk-through"), re.S):
        head, _, body = block.partition("\n\n")
        first, *header_lines = head.strip().splitlines()
        request_line, _, statuses = first.partition(" → ")
        method, path = request_line.split(" ", 1)
        examples.append({
            "method": method, "path": path, "statuses": [int(s) for s in statuses.split()],
            "headers": dict(line.split(": ", 1) for line in header_lines),
            "body": body.strip()})
    return examples


class Client:
    """HTTP to the live server; every answer checked against the schema and kept."""

    def __init__(self, base: str):
        self.base = base
        self.calls: list[tuple[str, str, int]] = []

    def send(self, method: str, path: str, *, headers=None, body: bytes | None = None,
             token: str | None = None, check: bool = True):
        headers = dict(headers or {})
        if token:
            headers["Authorization"] = f"Token {token}"
        request = urllib.request.Request(self.base + path, data=body, method=method,  # noqa: S310
                                         headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=600) as response:  # noqa: S310
                status, head, raw = response.status, response.headers, response.read()
        except urllib.error.HTTPError as exc:
            status, head, raw = exc.code, exc.headers, exc.read()
        self.calls.append((method, path, status))
        if check and path.startswith("/api/v1/"):
            assert_conforms(method, path.split("?")[0], status, head.items(), raw)
        content_type = head.get("Content-Type", "")
        return status, head, (json.loads(raw) if raw and "json" in content_type else raw)

    def json(self, method: str, path: str, data=None, *, token=None, headers=None):
        body = None if data is None else json.dumps(data).encode()
        headers = {"Content-Type": "application/json", **(headers or {})} if body else headers
        return self.send(method, path, headers=headers, body=body, token=token)


def fill(text: str, values: dict) -> str:
    def value(match):
        name = match.group(1)
        assert name in values, f"docs/api.md uses <{name}> before an answer gave it"
        return str(values[name])

    return re.sub(r"<([a-z_]+)>", value, text)


def run_example(client: Client, example: dict, values: dict):
    path = fill(example["path"], values)
    headers = {k: fill(v, values) for k, v in example["headers"].items()}
    body = fill(example["body"], values).encode() if example["body"] else None
    status, head, answer = client.send(example["method"], path, headers=headers, body=body)
    assert status in example["statuses"], (example, status, answer)
    return status, head, answer


@pytest.fixture
def server(transactional_db, tmp_path, demo, reviewer, lead):
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    # The server checks passwords with the production hashers (this process uses MD5).
    hasher = PBKDF2PasswordHasher()
    reviewer.password = hasher.encode(PASSWORD, hasher.salt())
    reviewer.save()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(DATABASE_URL=current_database_url(), IMMUNE_DATA_DIR=str(tmp_path),
               DJANGO_SETTINGS_MODULE="immune.settings", LOG_LEVEL="WARNING",
               CELERY_TASK_ALWAYS_EAGER="true", DECISION_IDEMPOTENCY_WAIT_S="2")
    with uvicorn(env, tmp_path / "server.log") as base:
        yield base, tmp_path / "server.log"


def test_the_walkthrough_of_docs_api_md(server, demo, reviewer, lead, tmp_path, settings):
    base, log_path = server
    client = Client(base)
    examples = {(e["method"], e["path"].split("?")[0]): e for e in http_examples()}
    assert len(examples) == 7
    values = {"username": reviewer.username, "password": PASSWORD}

    # 1. A token.
    _, _, answer = run_example(client, examples["POST", "/api/v1/auth/token/"], values)
    values["token"] = token = answer["token"]

    # 2. The list.
    _, _, answer = run_example(client, examples["GET", "/api/v1/apvs/"], values)
    assert answer["count"] == 1
    values["code"] = code = answer["results"][0]["code"]

    # 3. Deciding takes two calls: the detail, then the decision.
    calls_before = len(client.calls)
    _, _, detail = run_example(client, examples["GET", "/api/v1/apvs/<code>/"], values)
    values["revision"] = detail["current_patch"]["revision"]
    values["patch"] = detail["current_patch"]["id"]
    assert "approve" in detail["allowed_decisions"]
    status, head, decision = run_example(
        client, examples["POST", "/api/v1/apvs/<code>/decisions/"], values)
    assert len(client.calls) - calls_before == 2
    assert (decision["outcome"], decision["action_taken"]) == ("applied", "merged")
    assert head["Location"] == f"{base}/api/v1/decisions/{decision['id']}/"
    values["decision"] = decision["id"]
    _, _, followed = run_example(client, examples["GET", "/api/v1/decisions/<decision>/"],
                                 values)
    assert followed["status_after"] == "applied"
    assert APV.objects.get(code=code).status == "applied"

    # 4. A wargame, asked for and followed.
    status, head, started = run_example(client, examples["POST", "/api/v1/wargaming/validate"],
                                        values)
    values["run"] = started["run"]
    assert head["Location"] == started["url"]
    assert (status == 200) == (started["state"] == "finished")
    _, _, run = run_example(client, examples["GET", "/api/v1/wargaming/runs/<run>/"], values)
    assert run["id"] == started["run"] and run["patch"] == values["patch"]

    # 5. The WebSocket, joined with the token by the guide's snippet; a rejection (a
    # decision with a branch: recorded, then acted on) ends its loop.
    ws_base = base.replace("http://", "ws://")
    snippet = re.findall(r"```python\n(.*?)```", guide_section("Walk-through"), re.S)[0]
    namespace = {"WS": ws_base, "TOKEN": token}
    listener = threading.Thread(target=exec, args=(snippet, namespace), daemon=True)
    listener.start()
    jinja2 = (APV.objects.select_related("current_patch")
              .filter(dependency__normalised_name="jinja2", status="pending_review")
              .order_by("code").first())
    deadline = time.monotonic() + 60
    while "ack" not in namespace and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)  # its subscribe is on its way
    status, _, rejected = client.json("POST", f"/api/v1/apvs/{jinja2.code}/decisions/", {
        "decision": "reject", "justification": "Another fix is on its way.",
        "patch_revision": jinja2.current_patch.revision}, token=token)
    assert status == 201 and rejected["action_taken"] == "branch_deleted"
    listener.join(timeout=60)
    assert not listener.is_alive(), "the guide's WebSocket loop never saw decision.applied"
    assert namespace["ack"]["type"] == "connection_ack" and namespace["ack"]["auth"] == "token"
    assert namespace["ack"]["subscriptions"] == ["apvs", "decisions", "stats"]
    assert namespace["event"]["data"]["apv"] == jinja2.code
    assert namespace["event"]["data"]["decision_id"] == rejected["id"]

    # A token in the query string is no credential; a foreign Origin with a token is refused.
    with (pytest.raises(InvalidStatus),
          connect(f"{ws_base}/ws/reviews/?token={token}", open_timeout=10) as ws):
        ws.recv(timeout=5)
    with (pytest.raises(InvalidStatus),
          connect(f"{ws_base}/ws/reviews/", origin="https://evil.example",
                  subprotocols=["immune", f"immune.token.{token}"], open_timeout=10)):
        pass
    with connect(f"{ws_base}/ws/reviews/", additional_headers={
            "Authorization": f"Token {token}"}, open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["auth"] == "token"

    produced = produce_every_error(client, base, token, lead, demo, tmp_path, values)
    produced |= produce_server_faults(reviewer, settings)
    assert produced == documented_codes()
    assert "Traceback" not in log_path.read_text(), log_path.read_text()[-5000:]


def documented_codes() -> set[str]:
    section = guide_section("Error codes")
    return {line.split("`")[1] for line in section.splitlines() if line.startswith("| `")}


def produce_every_error(client: Client, base: str, token: str, lead, demo, tmp_path,
                        values: dict) -> set[str]:
    """Each error code through the live server, once; the codes seen."""
    lead_token = Token.objects.create(user=lead).key
    pending = list(APV.objects.select_related("current_patch")
                   .filter(status="pending_review", current_patch__isnull=False)
                   .order_by("code"))
    apv = pending[0]
    seen: dict[str, int] = {}

    def expect(code: str, status: int, answer) -> None:
        assert isinstance(answer, dict) and answer.get("error", {}).get("code") == code, answer
        assert isinstance(answer["error"]["details"], dict), answer
        seen[code] = status

    def call(code, method, path, data=None, *, as_token=token, headers=None, raw=None):
        if raw is not None:
            status, _, answer = client.send(method, path, headers=headers, body=raw,
                                            token=as_token)
        else:
            status, _, answer = client.json(method, path, data, token=as_token,
                                            headers=headers)
        expect(code, status, answer)
        return answer

    decide = f"/api/v1/apvs/{apv.code}/decisions/"
    reason = "Long enough to be a justification."
    call("validation_error", "GET", "/api/v1/apvs/?status=bogus")
    call("invalid_request", "GET", "/api/v1/apvs/?package=%01")
    call("parse_error", "POST", "/api/v1/wargaming/validate", raw=b"{",
         headers={"Content-Type": "application/json"})
    call("patch_invalid", "POST", f"/api/v1/apvs/{apv.code}/patches/",
         {"target_version": "not-a-version"})
    call("project_invalid", "POST", "/api/v1/projects/",
         {"name": "nowhere", "path": str(tmp_path / "missing")}, as_token=lead_token)
    call("decision_invalid", "POST", decide, {"decision": "approve", "justification": reason})
    call("not_authenticated", "GET", "/api/v1/apvs/", as_token=None)
    call("authentication_failed", "GET", "/api/v1/apvs/", as_token="0" * 40)
    call("permission_denied", "POST", "/api/v1/projects/", {"name": "x", "path": "/tmp"})
    call("decision_forbidden", "POST", decide, {
        "decision": "accept_risk", "justification": reason,
        "patch_revision": apv.current_patch.revision,
        "expires_at": (timezone.now() + timedelta(days=3)).isoformat()})
    call("not_found", "GET", "/api/v1/apvs/APV-19990101-0001/")
    call("method_not_allowed", "DELETE", "/api/v1/apvs/")
    call("not_acceptable", "GET", "/api/v1/apvs/", headers={"Accept": "application/xml"})
    call("patch_conflict", "POST", f"/api/v1/apvs/{values['code']}/patches/", {})
    call("decision_conflict", "POST", f"/api/v1/apvs/{values['code']}/decisions/",
         {"decision": "reject", "justification": reason, "patch_revision": values["revision"]})
    call("stale_revision", "POST", decide, {"decision": "approve", "justification": reason,
                                            "patch_revision": 99})
    key = "walkthrough-busy-key"
    with _holding_idempotency_key(client_user=Token.objects.get(key=token).user, key=key):
        call("idempotency_key_in_progress", "POST", decide, {
            "decision": "escalate", "justification": reason,
            "patch_revision": apv.current_patch.revision}, headers={"Idempotency-Key": key})
    call("request_too_large", "POST", "/api/v1/wargaming/validate",
         raw=b'{"patch": 1, "pad": "' + b"x" * (1024 * 1024 + 10) + b'"}',
         headers={"Content-Type": "application/json"})
    call("unsupported_media_type", "POST", "/api/v1/wargaming/validate", raw=b"patch=1",
         headers={"Content-Type": "text/plain"})
    call("idempotency_key_reused", "POST", decide, {
        "decision": "escalate", "justification": reason,
        "patch_revision": apv.current_patch.revision},
        headers={"Idempotency-Key": f"{values['code']}-approve-1"})
    call("scan_failed", "POST", f"/api/v1/projects/{_unexportable_project(tmp_path)}/scan/",
         as_token=lead_token)
    model = _model_version()
    activate = f"/api/v1/ml/models/{model.version}/activate"
    why = {"reason": "The walk-through activates it."}
    assert client.json("POST", activate, why, token=lead_token)[0] == 200
    call("conflict", "POST", activate, why, as_token=lead_token)
    for _ in range(30):  # the token endpoint's rate limit, per client address
        status, _, answer = client.json("POST", "/api/v1/auth/token/",
                                        {"username": "nobody", "password": "wrong"})
        if status == 429:
            expect("throttled", status, answer)
            break
    return set(seen)


class _holding_idempotency_key:
    """Hold the advisory lock a decision with ``key`` takes, from another connection: the
    server's request waits DECISION_IDEMPOTENCY_WAIT_S (2 s here), then answers 409."""

    def __init__(self, *, client_user, key: str):
        self.user, self.key = client_user, key

    def __enter__(self):
        import psycopg

        self.connection = psycopg.connect(current_database_url(), autocommit=True)
        self.connection.execute("SELECT pg_advisory_lock(%s, hashtext(%s))",
                                [IDEMPOTENCY_LOCK_SPACE, f"{self.user.pk}:{self.key}"])
        return self

    def __exit__(self, *exc):
        self.connection.close()


def _unexportable_project(tmp_path: Path) -> str:
    """A project whose branch holds a tree entry named ``..``: git will not export it, so
    nothing can be scanned (tests/inventory/test_hostile_repositories.py)."""
    from apps.inventory.services import project_add

    repo = make_repo(tmp_path / "dots", {"requirements.txt": "PyYAML==5.3.1\n"})
    project = project_add(name="dots", path=str(repo))

    def git_in(*args: str, stdin: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], input=stdin, text=True,
                              check=True, capture_output=True).stdout

    blob = git_in("hash-object", "-w", "--stdin", stdin="x\n").strip()
    inner = git_in("mktree", stdin=f"100644 blob {blob}\tpasswd\n").strip()
    tree = git_in("mktree", stdin=f"040000 tree {inner}\t..\n").strip()
    commit = git(repo, "commit-tree", tree, "-p", "HEAD", "-m", "dots").strip()
    git(repo, "update-ref", "refs/heads/main", commit)
    return project.name


def _model_version():
    """A model version row to activate (its artifact is never loaded by an activation)."""
    from apps.ml.models import ModelVersion

    return ModelVersion.objects.create(
        version=901, algorithm="walkthrough", training_size=0, cv_folds=0, cv_accuracy=0,
        cv_precision=0, cv_recall=0, cv_f1=0, cv_brier=0, artifact=b"",
        artifact_sha256="0" * 64, trigger="test")


def produce_server_faults(user, settings) -> set[str]:
    """The two codes a healthy server never answers, produced in this process: the
    handler's answer to a bug, and a broker that does not answer (a closed port)."""
    from rest_framework.test import APIClient, APIRequestFactory

    from apps.core.exceptions import api_exception_handler
    from immune.celery import app

    seen = set()
    request = APIRequestFactory().get("/api/v1/apvs/")
    response = api_exception_handler(RuntimeError("a bug"), {"request": request})
    assert response.status_code == 500
    seen.add(response.data["error"]["code"])

    client = APIClient()
    client.force_authenticate(user)
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{closed_port()}/0"
    previous, app.conf.task_always_eager = app.conf.task_always_eager, False
    try:
        patch_id = APV.objects.filter(current_patch__isnull=False).first().current_patch_id
        answer = client.post("/api/v1/wargaming/validate", {"patch": patch_id}, format="json")
    finally:
        app.conf.task_always_eager = previous
    assert answer.status_code == 503 and answer["Retry-After"]
    assert_conforms("POST", "/api/v1/wargaming/validate", 503, answer.headers.items(),
                    answer.content)
    seen.add(answer.json()["error"]["code"])
    return seen
