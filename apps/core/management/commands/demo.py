"""``manage.py demo``: the pipeline on bundled data, so a newcomer lands on real work.

Creates a git repository (``<data dir>/repos/demo``) whose requirements.txt pins real
vulnerable releases, imports the bundled advisory set (``data/advisories``), registers the
repository as project ``demo``, scans it and proposes a patch branch per package. Safe to
run again: nothing is duplicated.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.advisories.services import advisories_import
from apps.inventory.models import Project
from apps.inventory.services import project_add, project_scan
from apps.reviews.services.patches import patches_propose

DEMO_REQUIREMENTS = """\
# immune demo service: pins of real releases with published advisories
PyYAML==5.3.1
Jinja2==2.10
urllib3==1.24.1
Django==3.2
requests==2.19.1
Werkzeug==0.15.2
PyJWT==1.5.0
aiohttp==3.8.0
GitPython==3.1.0
MarkupSafe==1.1.1
"""
DEMO_APP = '''\
"""A tiny service the demo project stands for."""

import yaml


def load_settings(text: str) -> dict:
    return yaml.full_load(text)
'''

BUNDLED_ADVISORIES = Path(settings.BASE_DIR) / "data" / "advisories"


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=immune demo",
         "-c", "user.email=demo@immune.invalid", *args],
        check=True, capture_output=True, text=True,
    )


def ensure_demo_repository(path: Path) -> Path:
    if (path / ".git").is_dir():
        return path
    path.mkdir(parents=True, exist_ok=True)
    _git(path, "init", "-q", "-b", "main")
    (path / "requirements.txt").write_text(DEMO_REQUIREMENTS)
    (path / "app.py").write_text(DEMO_APP)
    _git(path, "add", "requirements.txt", "app.py")
    _git(path, "commit", "-q", "-m", "Demo service with vulnerable pins")
    return path


class Command(BaseCommand):
    help = "Load the demo: bundled advisories, a demo git repository, its scan."

    def handle(self, *args, **options):
        report = advisories_import(sources=[str(BUNDLED_ADVISORIES)], source_name="immune-demo")
        if report.failed:
            raise CommandError(f"bundled advisories failed to import: {report.failures}")
        self.stdout.write(f"advisories: {report.created} created, {report.updated} updated, "
                          f"{report.unchanged} unchanged")
        repo = ensure_demo_repository(Path(settings.IMMUNE_DATA_DIR) / "repos" / "demo")
        project = Project.objects.filter(name="demo").first() or project_add(
            name="demo", path=str(repo), description="Demo service with vulnerable pins")
        result = project_scan(project=project)
        self.stdout.write(
            f"project demo ({repo}): {result.dependencies} dependencies, "
            f"{len(result.apvs.current)} APVs ({len(result.apvs.created)} new)"
        )
        proposals = patches_propose(project=project)
        self.stdout.write(self.style.SUCCESS(
            f"patches: {len(proposals.proposed)} upgrade branch(es), {len(proposals.manual)} "
            f"manual, {len(proposals.failed)} failed; the review queue is at /admin/"
        ))
