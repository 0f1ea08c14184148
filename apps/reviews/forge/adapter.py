"""Which forge a project's patches go to.

With ``GITHUB_TOKEN`` set and the project's ``forge_repository`` configured, branches are
pushed to GitHub and become pull requests (``github.GitHubForge``); otherwise the local git
repository is the forge: approve merges the branch there, reject deletes it.
"""

from __future__ import annotations

from django.conf import settings


def github_forge_for(project):
    if not (settings.GITHUB_TOKEN and project.forge_repository):
        return None
    from apps.reviews.forge.github import GitHubForge

    return GitHubForge(token=settings.GITHUB_TOKEN, repository=project.forge_repository,
                       api_url=settings.GITHUB_API_URL,
                       push_url=project.forge_push_url or None)
