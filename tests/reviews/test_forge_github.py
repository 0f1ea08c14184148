"""GitHub forge adapter against a local server playing recorded GitHub REST responses.

No Django and no network: the API is a ``http.server`` on 127.0.0.1 answering with the
JSON files in ``github_recorded/`` and recording every request it gets; the push target
is a real bare repository in ``tmp_path`` (or, for the HTTPS-auth case, that same local
server, which git reaches over smart HTTP).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from apps.reviews.forge.github import ForgeError, GitHubForge, PullRequest

RECORDED = Path(__file__).parent / "github_recorded"
TOKEN = "ghp_R3c0rdedT3stT0kenImmune0000000000000"
REPOSITORY = "acme/webshop"
BRANCH = "immune/APV-20261122-0001-r1"
BASE_SHA = "2c33d0279f37ec3586a2bc5872b2848d96d13b82"
HEAD_SHA = "870ac6e6725ba2141647b1b49b1f1035481579d5"
MERGE_SHA = "6dcb09b5b57875f334f61aebed695e2e4193db5e"
PULLS = f"/repos/{REPOSITORY}/pulls"
REF = f"/repos/{REPOSITORY}/git/refs/heads/{BRANCH}"
TITLE = "APV-20261122-0001: requests 2.31.0 -> 2.32.4"
BODY = "immune proposes this patch for APV-20261122-0001."
BASIC = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()


# --- the recorded GitHub --------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: object
    authorization: str | None
    headers: dict[str, str]


class RecordedGitHub:
    """Answers (method, path) with a recorded file; anything else is GitHub's 404."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], tuple[int, object]] = {}
        self.requests: list[Request] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def add(self, method: str, path: str, status: int, recorded: str | None = None, *, data=None):
        """Answer with ``recorded`` (a file in github_recorded/), inline ``data``, or no body."""
        if recorded is not None:
            data = json.loads((RECORDED / recorded).read_text())
        self.routes[(method, path)] = (status, data)

    def calls(self) -> list[tuple[str, str]]:
        return [(request.method, request.path) for request in self.requests]

    def start(self) -> RecordedGitHub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _handler(self):
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw
                recorder.requests.append(
                    Request(
                        method=self.command,
                        path=parts.path,
                        query={key: values[-1] for key, values in parse_qs(parts.query).items()},
                        body=body,
                        authorization=self.headers.get("Authorization"),
                        headers=dict(self.headers.items()),
                    )
                )
                status, data = recorder.routes.get(
                    (self.command, parts.path),
                    (404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest",
                           "status": "404"}),
                )
                payload = b"" if data is None else json.dumps(data).encode()
                self.send_response(status)
                if payload:
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("X-GitHub-Media-Type", "github.v3; format=json")
                self.send_header("X-RateLimit-Limit", "5000")
                self.send_header("X-RateLimit-Remaining", "4999")
                self.send_header("X-RateLimit-Reset", "1795431600")
                self.end_headers()
                if payload:
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, format, *args):  # keep the test output clean
                pass

        return Handler


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                 "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def api():
    server = RecordedGitHub().start()
    yield server
    server.stop()


# --- real git repositories -------------------------------------------------------------------

GIT_ENV = {
    "GIT_AUTHOR_NAME": "immune", "GIT_AUTHOR_EMAIL": "immune@localhost",
    "GIT_COMMITTER_NAME": "immune", "GIT_COMMITTER_EMAIL": "immune@localhost",
    "GIT_AUTHOR_DATE": "2026-11-22T10:00:00+00:00",
    "GIT_COMMITTER_DATE": "2026-11-22T10:00:00+00:00",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(*args: str, cwd: Path | None = None) -> str:
    result = subprocess.run(
        ["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV},
        capture_output=True, text=True, check=True,
    )
    return result.stdout.strip()


@pytest.fixture
def source(tmp_path) -> Path:
    """A working copy with main and the patch branch, at the shas the recordings name."""
    repo = tmp_path / "src"
    git("-c", "init.defaultBranch=main", "init", "-q", str(repo))
    (repo / "requirements.txt").write_text("requests==2.31.0\n")
    git("add", ".", cwd=repo)
    git("commit", "-q", "-m", "Initial commit", cwd=repo)
    git("checkout", "-q", "-b", BRANCH, cwd=repo)
    (repo / "requirements.txt").write_text("requests==2.32.4\n")
    git("commit", "-q", "-am", "Bump requests to 2.32.4 (APV-20261122-0001)", cwd=repo)
    assert git("rev-parse", "main", cwd=repo) == BASE_SHA
    assert git("rev-parse", BRANCH, cwd=repo) == HEAD_SHA
    return repo


@pytest.fixture
def bare(tmp_path) -> Path:
    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", str(remote))
    return remote


def make_forge(api: RecordedGitHub, push_url: Path | str | None = None) -> GitHubForge:
    return GitHubForge(
        token=TOKEN, repository=REPOSITORY, api_url=api.url,
        push_url=str(push_url) if push_url is not None else None, timeout=5,
    )


def assert_token_auth(api: RecordedGitHub) -> None:
    assert api.requests
    for request in api.requests:
        assert request.authorization == f"token {TOKEN}"


# --- opening ---------------------------------------------------------------------------------


def test_open_pull_request_pushes_the_branch_and_posts_the_pull(api, source, bare):
    api.add("POST", PULLS, 201, "pulls_create_201.json")
    forge = make_forge(api, bare)

    pull = forge.open_pull_request(repo_path=str(source), branch=BRANCH, base="main",
                                   title=TITLE, body=BODY)

    assert pull == PullRequest(number=42, url="https://github.com/acme/webshop/pull/42",
                               head_sha=HEAD_SHA)
    assert git("rev-parse", f"refs/heads/{BRANCH}", cwd=bare) == HEAD_SHA
    assert api.calls() == [("POST", PULLS)]
    (post,) = api.requests
    assert post.body == {"base": "main", "head": BRANCH, "title": TITLE, "body": BODY}
    assert_token_auth(api)


def test_open_pull_request_that_already_exists_returns_the_open_one(api, source, bare):
    api.add("POST", PULLS, 422, "pulls_create_422_already_exists.json")
    api.add("GET", PULLS, 200, "pulls_list_open_head_200.json")
    forge = make_forge(api, bare)

    pull = forge.open_pull_request(repo_path=str(source), branch=BRANCH, base="main",
                                   title=TITLE, body=BODY)

    assert pull == PullRequest(number=42, url="https://github.com/acme/webshop/pull/42",
                               head_sha=HEAD_SHA)
    assert api.calls() == [("POST", PULLS), ("GET", PULLS)]
    lookup = api.requests[1]
    assert lookup.query["state"] == "open"
    assert lookup.query["head"] == f"acme:{BRANCH}"
    assert_token_auth(api)


def test_already_exists_but_none_open_is_an_error(api, source, bare):
    api.add("POST", PULLS, 422, "pulls_create_422_already_exists.json")
    api.add("GET", PULLS, 200, data=[])
    forge = make_forge(api, bare)

    with pytest.raises(ForgeError, match="already exists"):
        forge.open_pull_request(repo_path=str(source), branch=BRANCH, base="main",
                                title=TITLE, body=BODY)


def test_other_validation_failures_are_errors(api, source, bare):
    api.add("POST", PULLS, 422, data={
        "message": "Validation Failed",
        "errors": [{"resource": "PullRequest", "field": "base", "code": "invalid"}],
        "documentation_url": "https://docs.github.com/rest/pulls/pulls#create-a-pull-request",
        "status": "422",
    })
    forge = make_forge(api, bare)

    with pytest.raises(ForgeError) as caught:
        forge.open_pull_request(repo_path=str(source), branch=BRANCH, base="nope",
                                title=TITLE, body=BODY)

    assert caught.value.status == 422
    assert "HTTP 422: Validation Failed (invalid)" in str(caught.value)
    assert api.calls() == [("POST", PULLS)]


# --- merging ---------------------------------------------------------------------------------


def test_merge_returns_the_merge_sha(api):
    api.add("PUT", f"{PULLS}/42/merge", 200, "pulls_merge_200.json")
    forge = make_forge(api)

    sha = forge.merge_pull_request(number=42, expected_head_sha=HEAD_SHA,
                                   commit_title="Merge APV-20261122-0001 (approved)")

    assert sha == MERGE_SHA
    assert api.calls() == [("PUT", f"{PULLS}/42/merge")]  # no GET of the pull first
    assert api.requests[0].body == {
        "commit_title": "Merge APV-20261122-0001 (approved)",
        "merge_method": "merge",
        "sha": HEAD_SHA,
    }
    assert_token_auth(api)


def test_merge_not_mergeable(api):
    api.add("PUT", f"{PULLS}/42/merge", 405, "pulls_merge_405_not_mergeable.json")
    forge = make_forge(api)

    with pytest.raises(ForgeError, match="not mergeable") as caught:
        forge.merge_pull_request(number=42, expected_head_sha=HEAD_SHA, commit_title="Merge")

    assert caught.value.status == 405
    assert "HTTP 405" in str(caught.value)


def test_merge_with_the_head_moved(api):
    api.add("PUT", f"{PULLS}/42/merge", 409, "pulls_merge_409_head_moved.json")
    forge = make_forge(api)

    with pytest.raises(ForgeError, match="Head branch was modified") as caught:
        forge.merge_pull_request(number=42, expected_head_sha="0" * 40, commit_title="Merge")

    assert caught.value.status == 409
    assert api.requests[0].body["sha"] == "0" * 40


def test_bad_credentials(api):
    api.add("PUT", f"{PULLS}/42/merge", 401, "bad_credentials_401.json")
    forge = make_forge(api)

    with pytest.raises(ForgeError, match="HTTP 401: Bad credentials") as caught:
        forge.merge_pull_request(number=42, expected_head_sha=HEAD_SHA, commit_title="Merge")

    assert caught.value.status == 401
    assert TOKEN not in str(caught.value)
    assert TOKEN not in repr(forge)


def test_api_unreachable_is_a_forge_error():
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    forge = GitHubForge(token=TOKEN, repository=REPOSITORY, api_url=f"http://127.0.0.1:{port}",
                        timeout=5)

    with pytest.raises(ForgeError, match="unreachable") as caught:
        forge.merge_pull_request(number=42, expected_head_sha=HEAD_SHA, commit_title="Merge")

    assert TOKEN not in str(caught.value)


# --- closing ---------------------------------------------------------------------------------


def test_close_closes_the_pull_and_deletes_the_branch(api):
    api.add("PATCH", f"{PULLS}/42", 200, "pulls_update_closed_200.json")
    api.add("DELETE", REF, 204)
    forge = make_forge(api)

    forge.close_pull_request(number=42, branch=BRANCH)

    assert api.calls() == [("PATCH", f"{PULLS}/42"), ("DELETE", REF)]
    assert api.requests[0].body == {"state": "closed"}
    assert_token_auth(api)


def test_close_tolerates_a_branch_already_gone(api):
    api.add("PATCH", f"{PULLS}/42", 200, "pulls_update_closed_200.json")
    api.add("DELETE", REF, 422, "git_refs_delete_422_missing.json")
    forge = make_forge(api)

    forge.close_pull_request(number=42, branch=BRANCH)

    assert api.calls() == [("PATCH", f"{PULLS}/42"), ("DELETE", REF)]


def test_close_reports_other_delete_failures(api):
    api.add("PATCH", f"{PULLS}/42", 200, "pulls_update_closed_200.json")
    api.add("DELETE", REF, 403, data={
        "message": "Resource not accessible by personal access token",
        "documentation_url": "https://docs.github.com/rest/git/refs#delete-a-reference",
        "status": "403",
    })
    forge = make_forge(api)

    with pytest.raises(ForgeError, match="HTTP 403: Resource not accessible") as caught:
        forge.close_pull_request(number=42, branch=BRANCH)

    assert BRANCH in str(caught.value)


def test_close_fails_when_the_pull_cannot_be_closed(api):
    api.add("PATCH", f"{PULLS}/42", 401, "bad_credentials_401.json")
    forge = make_forge(api)

    with pytest.raises(ForgeError, match="Bad credentials"):
        forge.close_pull_request(number=42, branch=BRANCH)

    assert api.calls() == [("PATCH", f"{PULLS}/42")]  # the branch is left alone


# --- pushing and the token -------------------------------------------------------------------


def test_push_failure_does_not_leak_the_token(api, source, tmp_path):
    forge = make_forge(api, tmp_path / "missing.git")

    with pytest.raises(ForgeError, match="git push") as caught:
        forge.open_pull_request(repo_path=str(source), branch=BRANCH, base="main",
                                title=TITLE, body=BODY)

    message = str(caught.value)
    assert "missing.git" in message
    assert TOKEN not in message and BASIC not in message
    assert api.requests == []  # no pull request without the branch


def test_token_travels_in_the_environment_not_in_argv(monkeypatch, source, bare, api):
    real_run = subprocess.run
    pushes = []

    def spy(args, *positional, **options):
        if "push" in args:
            pushes.append((list(args), dict(options.get("env") or {})))
        return real_run(args, *positional, **options)

    monkeypatch.setattr(subprocess, "run", spy)
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")  # a config entry the caller already passes
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "core.quotePath")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", "false")
    forge = make_forge(api, bare)

    forge.push_branch(str(source), BRANCH)

    (argv, env), = pushes
    assert argv == ["git", "-C", str(source), "push", str(bare),
                    f"refs/heads/{BRANCH}:refs/heads/{BRANCH}"]
    assert not any(TOKEN in arg or BASIC in arg for arg in argv)
    assert env["GIT_CONFIG_COUNT"] == "2"
    assert (env["GIT_CONFIG_KEY_0"], env["GIT_CONFIG_VALUE_0"]) == ("core.quotePath", "false")
    assert env["GIT_CONFIG_KEY_1"] == "http.extraHeader"
    assert env["GIT_CONFIG_VALUE_1"] == f"Authorization: Basic {BASIC}"
    assert env["GIT_TERMINAL_PROMPT"] == "0"
    assert git("rev-parse", f"refs/heads/{BRANCH}", cwd=bare) == HEAD_SHA


def test_https_push_sends_the_token_as_a_header_and_never_shows_it(api, source):
    # git speaks smart HTTP to the recorded server, which has no such repository: git's
    # first request carries the header, the push fails, and the error hides the token.
    forge = make_forge(api, f"{api.url}/acme/webshop.git")

    with pytest.raises(ForgeError, match="git push") as caught:
        forge.push_branch(str(source), BRANCH)

    assert TOKEN not in str(caught.value) and BASIC not in str(caught.value)
    (discovery,) = api.requests
    assert discovery.path == "/acme/webshop.git/info/refs"
    assert discovery.query == {"service": "git-receive-pack"}
    assert discovery.authorization == f"Basic {BASIC}"
    assert TOKEN not in discovery.path


def test_push_errors_are_scrubbed(monkeypatch, api, source):
    def leaky(args, *positional, **options):
        stderr = f"fatal: unable to access with {TOKEN} and header Basic {BASIC}\n"
        return subprocess.CompletedProcess(args, 128, stdout="", stderr=stderr)

    monkeypatch.setattr(subprocess, "run", leaky)
    forge = make_forge(api)

    with pytest.raises(ForgeError) as caught:
        forge.push_branch(str(source), BRANCH)

    assert TOKEN not in str(caught.value) and BASIC not in str(caught.value)
    assert "***" in str(caught.value)


def test_defaults_and_validation():
    forge = GitHubForge(token=TOKEN, repository=REPOSITORY)
    assert forge.push_url == "https://github.com/acme/webshop.git"
    assert TOKEN not in repr(forge)
    with pytest.raises(ValueError):
        GitHubForge(token=TOKEN, repository="webshop")
    with pytest.raises(ValueError):
        GitHubForge(token="", repository=REPOSITORY)
