"""GitHub forge: push a patch branch, open its pull request, merge it or close it.

immune commits every proposed patch on its own branch (``immune/<apv-code>-r<revision>``)
in the project's local working copy. With a GitHub token and repository this module
pushes that branch to GitHub and opens a pull request; a reviewer's approve merges the
pull request, a reject closes it and deletes the remote branch.

No Django here: everything comes in through the constructor, so the adapter is tested
against a local HTTP server playing recorded GitHub responses and a local bare repository.

The token never travels in a URL or on a command line. The REST API gets it through
PyGithub's ``Authorization`` header; ``git push`` gets it as an ``http.extraHeader``
passed through the environment (``GIT_CONFIG_COUNT``/``GIT_CONFIG_KEY_n``/
``GIT_CONFIG_VALUE_n``), which process lists do not show. Every error message is
scrubbed of the token before it leaves this module.
"""

from __future__ import annotations

import base64
import os
import subprocess
from dataclasses import dataclass
from urllib.parse import quote

import requests
from github import Auth, Github, GithubException

#: How long one ``git push`` may take before it is given up (seconds).
PUSH_TIMEOUT_SECONDS = 600
#: What GitHub's 422 says when a pull request for the same head and base is already open.
_ALREADY_EXISTS = "a pull request already exists"
_REDACTED = "***"


@dataclass(frozen=True)
class PullRequest:
    number: int
    url: str  # html_url: the page a person opens
    head_sha: str


class ForgeError(Exception):
    """A forge operation failed; the message says what and why, never the token.

    ``status`` is the HTTP status GitHub answered with (None for push and network errors).
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class GitHubForge:
    """Pull requests on one GitHub repository ("owner/name")."""

    def __init__(
        self,
        *,
        token: str,
        repository: str,
        api_url: str = "https://api.github.com",
        push_url: str | None = None,
        timeout: float = 30,
    ) -> None:
        if not token:
            raise ValueError("a GitHub token is required")
        owner, _, name = repository.partition("/")
        if not owner or not name or "/" in name:
            raise ValueError(f"repository must look like 'owner/name', not {repository!r}")
        self._token = token
        # What git sends over HTTPS: GitHub takes a token as the password of any user name.
        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode("ascii")
        self._auth_header = f"Authorization: Basic {basic}"
        self._secrets = (token, basic)
        self.repository = repository
        self.owner = owner
        self.push_url = push_url or f"https://github.com/{repository}.git"
        # lazy=True: objects built from a URL (repository, pull request) are not fetched
        # first, so each operation makes only the requests it names.
        # retry=None: a failure is reported at once; the caller decides whether to retry.
        self._github = Github(
            base_url=api_url.rstrip("/"),
            auth=Auth.Token(token),
            timeout=timeout,
            retry=None,
            lazy=True,
        )
        self._repo = self._github.get_repo(repository)

    def __repr__(self) -> str:  # never the token
        return f"GitHubForge(repository={self.repository!r}, push_url={self.push_url!r})"

    def close(self) -> None:
        self._github.close()

    # --- git ------------------------------------------------------------------------------

    def push_command(self, repo_path: str, branch: str) -> list[str]:
        """The argv of the push: no token in it (that travels in the environment)."""
        refspec = f"refs/heads/{branch}:refs/heads/{branch}"
        return ["git", "-C", str(repo_path), "push", self.push_url, refspec]

    def push_environment(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """``base`` (default os.environ) plus the auth header as one more git config entry."""
        env = dict(os.environ if base is None else base)
        try:
            index = int(env.get("GIT_CONFIG_COUNT", "0"))
        except ValueError:
            index = 0
        env["GIT_CONFIG_COUNT"] = str(index + 1)
        env[f"GIT_CONFIG_KEY_{index}"] = "http.extraHeader"
        env[f"GIT_CONFIG_VALUE_{index}"] = self._auth_header
        env["GIT_TERMINAL_PROMPT"] = "0"  # never wait for a password on a terminal
        return env

    def push_branch(self, repo_path: str, branch: str) -> None:
        """Push ``branch`` of the working copy at ``repo_path`` to the same name on the forge."""
        try:
            result = subprocess.run(
                self.push_command(repo_path, branch),
                env=self.push_environment(),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=PUSH_TIMEOUT_SECONDS,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ForgeError(self._scrub(f"git push of {branch} failed: {exc}")) from None
        if result.returncode != 0:
            detail = (result.stderr or result.stdout or "").strip()
            raise ForgeError(
                self._scrub(
                    f"git push of {branch} to {self.push_url} failed "
                    f"(exit {result.returncode}): {detail}"
                )
            )

    # --- pull requests --------------------------------------------------------------------

    def open_pull_request(
        self, *, repo_path: str, branch: str, base: str, title: str, body: str
    ) -> PullRequest:
        """Push ``branch`` and open its pull request into ``base`` (or find the open one)."""
        self.push_branch(repo_path, branch)
        try:
            pull = self._repo.create_pull(base=base, head=branch, title=title, body=body)
            return self._pull_request(pull)
        except GithubException as exc:
            if exc.status == 422 and _already_exists(exc.data):
                return self._open_pull_for(branch)
            raise self._api_error(f"opening a pull request for {branch}", exc) from None
        except requests.RequestException as exc:
            raise self._network_error(exc) from None

    def merge_pull_request(self, *, number: int, expected_head_sha: str, commit_title: str) -> str:
        """Merge pull request ``number`` if its head is still ``expected_head_sha``; its sha."""
        try:
            status = self._repo.get_pull(number).merge(
                commit_title=commit_title, merge_method="merge", sha=expected_head_sha
            )
            merged, sha, message = status.merged, status.sha, status.message
        except GithubException as exc:
            raise self._api_error(f"merging pull request #{number}", exc) from None
        except requests.RequestException as exc:
            raise self._network_error(exc) from None
        if not merged or not sha:
            raise ForgeError(self._scrub(f"merging pull request #{number} failed: {message}"))
        return sha

    def close_pull_request(self, *, number: int, branch: str) -> None:
        """Close pull request ``number`` and delete its branch (already gone is fine)."""
        try:
            self._repo.get_pull(number).edit(state="closed")
        except GithubException as exc:
            raise self._api_error(f"closing pull request #{number}", exc) from None
        except requests.RequestException as exc:
            raise self._network_error(exc) from None
        # PyGithub's lazy repo.get_git_ref("heads/x").delete() would DELETE .../git/ref/heads/x
        # (the singular path of "get a reference"); deleting is documented on .../git/refs/.
        ref_url = f"{self._repo.url}/git/refs/heads/{quote(branch)}"
        try:
            self._github.requester.requestJsonAndCheck("DELETE", ref_url)
        except GithubException as exc:
            if exc.status in (404, 422):  # "Reference does not exist": someone deleted it
                return
            raise self._api_error(f"deleting branch {branch}", exc) from None
        except requests.RequestException as exc:
            raise self._network_error(exc) from None

    # --- helpers --------------------------------------------------------------------------

    def _open_pull_for(self, branch: str) -> PullRequest:
        try:
            for pull in self._repo.get_pulls(state="open", head=f"{self.owner}:{branch}"):
                return self._pull_request(pull)
        except GithubException as exc:
            raise self._api_error(f"finding the open pull request for {branch}", exc) from None
        except requests.RequestException as exc:
            raise self._network_error(exc) from None
        raise ForgeError(
            f"GitHub says a pull request for {branch} already exists, but none is open"
        )

    @staticmethod
    def _pull_request(pull) -> PullRequest:
        return PullRequest(number=pull.number, url=pull.html_url, head_sha=pull.head.sha)

    def _api_error(self, action: str, exc: GithubException) -> ForgeError:
        data = exc.data if isinstance(exc.data, dict) else {}
        message = data.get("message") or exc.message or "no message"
        details = [
            (error.get("message") or error.get("code") or "") if isinstance(error, dict) else error
            for error in data.get("errors") or []
        ]
        details = [str(detail) for detail in details if detail]
        text = f"GitHub {action} failed: HTTP {exc.status}: {message}"
        if details:
            text += f" ({'; '.join(details)})"
        return ForgeError(self._scrub(text), status=exc.status)

    def _network_error(self, exc: requests.RequestException) -> ForgeError:
        return ForgeError(self._scrub(f"GitHub API unreachable: {type(exc).__name__}: {exc}"))

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, _REDACTED)
        return text


def _already_exists(data: object) -> bool:
    if not isinstance(data, dict):
        return False
    messages = [str(data.get("message", ""))]
    messages += [
        str(error.get("message", "")) if isinstance(error, dict) else str(error)
        for error in data.get("errors") or []
    ]
    return any(_ALREADY_EXISTS in message.lower() for message in messages)
