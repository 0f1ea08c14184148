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
DEMO_SERVICE = Path(settings.BASE_DIR) / "apps" / "wargaming" / "demo_service"
#: The service's own release pin, so scans see the demo advisories about its code.
SERVICE_MANIFEST = """\
# The demo service as released (its own pin), so scans see the advisories about its code.
immune-demo-service==1.0.0
"""
#: Code patches the demo submits: (CWE, which patch files, in order). The last one stays
#: the current revision; every one is wargamed with --wargame.
DEMO_CODE_PATCHES = [
    ("89", ["ineffective", "effective"]),
    ("22", ["ineffective", "effective"]),
    ("78", ["effective"]),
    ("79", ["ineffective"]),
]


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
    (path / "service").mkdir()
    for name in ("app.py", "test_app.py"):
        (path / "service" / name).write_text((DEMO_SERVICE / name).read_text())
    (path / "service" / "requirements-release.txt").write_text(SERVICE_MANIFEST)
    _git(path, "add", "requirements.txt", "app.py", "service")
    _git(path, "commit", "-q", "-m", "Demo service with vulnerable pins")
    return path


class Command(BaseCommand):
    help = "Load the demo: bundled advisories, a demo git repository, its scan."

    def add_arguments(self, parser):
        parser.add_argument("--wargame", action="store_true",
                            help="also wargame the patches (installs the packages it attacks)")

    def handle(self, *args, wargame: bool = False, **options):
        report = advisories_import(sources=[str(BUNDLED_ADVISORIES),
                                            str(DEMO_SERVICE / "advisories")],
                                   source_name="immune-demo")
        if report.failed:
            raise CommandError(f"bundled advisories failed to import: {report.failures}")
        self.stdout.write(f"advisories: {report.created} created, {report.updated} updated, "
                          f"{report.unchanged} unchanged")
        repo = ensure_demo_repository(Path(settings.IMMUNE_DATA_DIR) / "repos" / "demo")
        project = Project.objects.filter(name="demo").first() or project_add(
            name="demo", path=str(repo), description="Demo service with vulnerable pins")
        if not project.service_command:
            project.service_command = "python service/app.py --port {port}"
            project.service_ready_path = "/health"
            project.test_command = "python -m unittest discover -s service -p test_app.py"
            project.save(update_fields=["service_command", "service_ready_path",
                                        "test_command", "updated_at"])
        result = project_scan(project=project)
        self.stdout.write(
            f"project demo ({repo}): {result.dependencies} dependencies, "
            f"{len(result.apvs.current)} APVs ({len(result.apvs.created)} new)"
        )
        proposals = patches_propose(project=project)
        code_patches = self._code_patches(project)
        self.stdout.write(
            f"patches: {len(proposals.proposed)} upgrade branch(es), {len(proposals.manual)} "
            f"manual, {len(proposals.failed)} failed; {len(code_patches)} code patch(es) "
            "to the demo service")
        if wargame:
            self._wargame(project, code_patches)
        self.stdout.write(self.style.SUCCESS("the review queue is at /admin/reviews/apv/"))

    def _code_patches(self, project) -> list:
        """Effective and ineffective fixes to the demo service's own flaws, as code patches
        (each a revision of the APV its advisory raised), unless already submitted."""
        from apps.reviews.models import APV, Patch
        from apps.reviews.services.patches import patch_submit_code

        made = []
        for cwe, kinds in DEMO_CODE_PATCHES:
            apv = APV.objects.filter(project=project,
                                     advisory__osv_id=f"IMMUNE-DEMO-CWE-{cwe}").first()
            if apv is None or Patch.objects.filter(apvs=apv, strategy="code_patch").exists():
                continue
            for kind in kinds:
                diff = (DEMO_SERVICE / "patches" / f"cwe-{cwe}-{kind}.diff").read_text()
                made.append(patch_submit_code(
                    apv=apv, diff=diff, title=f"Fix CWE-{cwe} in the demo service ({kind} "
                    "version, for the demo)"))
        return made

    def _wargame(self, project, code_patches) -> None:
        from apps.reviews.models import Patch
        from apps.wargaming.services import wargame_execute, wargame_start

        upgrades = Patch.objects.filter(project=project, strategy="dependency_upgrade",
                                        state="proposed")
        for patch in [*upgrades, *code_patches]:
            run, created = wargame_start(patch=patch, trigger="demo")
            if created:
                run = wargame_execute(run=run)
            self.stdout.write(f"  wargame {patch.title}: {run.verdict or run.state}")
