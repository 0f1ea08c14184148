"""Which forge a project's patches go to.

With ``GITHUB_TOKEN`` set and the project's ``forge_repository`` configured, branches are
pushed to GitHub and become pull requests (``github.GitHubForge``); otherwise the local git
repository is the forge: approve merges the branch there, reject deletes it.

Every GitHub operation goes through the ``forge`` circuit breaker (issue 12): after
``BREAKER_FORGE_FAILURES`` outages in a row (no answer, or a 5xx) the next operations fail
at once with a ``ForgeError`` saying so, instead of each waiting out GitHub's timeout, until
``BREAKER_FORGE_RESET_S`` has passed. A 4xx (a merge conflict, a missing branch) is an
answer, not an outage, and never opens it.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from apps.core.breakers import Breaker, CircuitBreakerError


def _is_outage(exc: BaseException) -> bool:
    from apps.reviews.forge.github import ForgeError

    return isinstance(exc, ForgeError) and (exc.status is None or exc.status >= 500)


FORGE_BREAKER = Breaker("forge", failure_threshold=settings.BREAKER_FORGE_FAILURES,
                        recovery_timeout=settings.BREAKER_FORGE_RESET_S, is_failure=_is_outage)


class GuardedForge:
    """A ``GitHubForge`` whose network operations pass the ``forge`` breaker."""

    GUARDED = ("open_pull_request", "merge_pull_request", "close_pull_request", "push_branch")

    def __init__(self, forge: Any) -> None:
        self._forge = forge

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._forge, name)
        if name not in self.GUARDED:
            return attribute

        def guarded(*args: Any, **kwargs: Any) -> Any:
            from apps.reviews.forge.github import ForgeError

            try:
                return FORGE_BREAKER.guard(attribute, *args, **kwargs)
            except CircuitBreakerError:
                raise ForgeError(
                    f"GitHub is treated as down after {FORGE_BREAKER.failure_count} failures "
                    f"in a row; the next attempt goes through in "
                    f"{max(FORGE_BREAKER.open_remaining, 0)} s") from None

        return guarded

    def __repr__(self) -> str:
        return repr(self._forge)


def github_forge_for(project):
    if not (settings.GITHUB_TOKEN and project.forge_repository):
        return None
    from apps.reviews.forge.github import GitHubForge

    return GuardedForge(GitHubForge(token=settings.GITHUB_TOKEN,
                                    repository=project.forge_repository,
                                    api_url=settings.GITHUB_API_URL,
                                    push_url=project.forge_push_url or None))
