"""Building blocks for tests: real git repositories and state made through services."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import factory
from django.contrib.auth import get_user_model

from tests.helpers import pypa_root  # noqa: F401 (re-exported for the tests using it)

ROOT = Path(__file__).resolve().parent.parent
DEMO_ADVISORIES = ROOT / "data" / "advisories"
TEST_ADVISORIES = ROOT / "tests" / "advisories" / "data"

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test Author", "GIT_AUTHOR_EMAIL": "author@example.org",
    "GIT_COMMITTER_NAME": "Test Author", "GIT_COMMITTER_EMAIL": "author@example.org",
}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
        env={**os.environ, **GIT_ENV},
    ).stdout


def make_repo(path: Path, files: dict[str, str], *, branch: str = "main") -> Path:
    """A real git repository with ``files`` committed on ``branch``."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", branch)
    commit_files(path, files, message="initial")
    return path


def commit_files(repo: Path | str, files: dict[str, str], *, message: str = "change") -> str:
    repo = Path(repo)
    for relative, text in files.items():
        target = repo / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()


def pyyaml_upgrade_patch(tmp_path: Path):
    """A real upgrade patch (PyYAML 5.3.1 → 5.4) for one APV, proposed by the services on a
    scanned repository (the demo's PyYAML advisories imported)."""
    from apps.advisories.services import advisories_import
    from apps.inventory.services import project_add, project_scan
    from apps.reviews.services.patches import patches_propose

    advisories_import(sources=[str(DEMO_ADVISORIES / "pyyaml")])
    repo = make_repo(tmp_path / "svc", {"requirements.txt": "PyYAML==5.3.1\n"})
    project = project_scan(project=project_add(name="svc", path=str(repo))).project
    return patches_propose(project=project).proposed[0]


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.org")
    is_staff = True
