"""The demo pipeline (``manage.py demo``): real advisories, real git repositories, real
wargames, a model trained on their verdicts and A/B tested against more wargames.

Two projects, both git repositories under ``<data dir>/repos``:

* ``demo`` is the corpus: vulnerable pins of ten packages, the deliberately vulnerable demo
  service, good upgrades (the smallest fixing version), bad upgrades (a developer's pick
  that is still vulnerable), and an effective and an ineffective code patch for each of the
  service's seven flaws. Every one is wargamed for real; their verdicts are the labels.
* ``demo-shop`` comes after a model is trained and an A/B experiment is enabled: other pins,
  another copy of the service. Its patches are routed by ML-first like any proposal; the
  experiment wargames its sample of the ML-routed ones, so the accuracy report compares the
  model with real runs.

Re-running adds nothing: advisories, projects, patches and runs are found again, a model is
only trained when there are new labels, and cached environments make wargames fast. A
demo repository the database has no project for (a data folder kept, a new database) is
made again from scratch: its branches and merges belong to the other database's patches.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from django.conf import settings

from apps.advisories.services import advisories_import
from apps.inventory.models import Project
from apps.inventory.services import project_add, project_scan, project_update
from apps.reviews.models import APV, APVStatus, Patch, PatchStrategy
from apps.reviews.services.patches import (
    patch_propose_upgrade,
    patch_submit_code,
    patches_propose,
)

BUNDLED_ADVISORIES = Path(settings.BASE_DIR) / "data" / "advisories"
DEMO_SERVICE = Path(settings.BASE_DIR) / "apps" / "wargaming" / "demo_service"

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
SHOP_REQUIREMENTS = """\
# immune demo shop: newer, still vulnerable pins
PyYAML==5.1
Jinja2==2.11.2
urllib3==1.26.16
Django==3.2.13
requests==2.19.1
Werkzeug==2.1.0
PyJWT==2.3.0
GitPython==3.1.29
MarkupSafe==1.1.1
"""
DEMO_APP = '''\
"""A tiny service the demo project stands for."""

import yaml


def load_settings(text: str) -> dict:
    return yaml.full_load(text)
'''
#: The service's own release pin, so scans see the demo advisories about its code.
SERVICE_MANIFEST = """\
# The demo service as released (its own pin), so scans see the advisories about its code.
immune-demo-service==1.0.0
"""
#: The subject of a demo repository's first commit: how a folder is recognised as one.
FIRST_COMMIT = "Demo service with vulnerable pins"
SERVICE_COMMAND = "python service/app.py --port {port}"
SERVICE_TEST_COMMAND = "python -m unittest discover -s service -p test_app.py"

#: Upgrades a developer might pick that stay inside the advisory's affected range (the
#: wargame must catch them): package → still-vulnerable target, per project.
BAD_UPGRADES = {
    "demo": {"django": "3.2.13", "urllib3": "1.26.16", "werkzeug": "2.2.2",
             "gitpython": "3.1.29"},
    "demo-shop": {"pyyaml": "5.3.1", "werkzeug": "2.2.2"},
}
CWES = ("89", "22", "78", "79", "601", "611", "918")
#: Code patches submitted per project: (CWE, patch files in order; the last stays current).
CODE_PATCHES = {
    "demo": [(cwe, ["ineffective", "effective"]) for cwe in CWES],
    "demo-shop": [("89", ["effective"]), ("22", ["ineffective"]), ("78", ["effective"]),
                  ("79", ["ineffective"]), ("601", ["ineffective"]), ("611", ["effective"]),
                  ("918", ["effective"])],
}


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=immune demo",
         "-c", "user.email=demo@immune.invalid", *args],
        check=True, capture_output=True, text=True,
    )


def ensure_demo_repository(path: Path, requirements: str = DEMO_REQUIREMENTS) -> Path:
    if (path / ".git").is_dir():
        return path
    path.mkdir(parents=True, exist_ok=True)
    _git(path, "init", "-q", "-b", "main")
    (path / "requirements.txt").write_text(requirements)
    (path / "app.py").write_text(DEMO_APP)
    (path / "service").mkdir()
    for name in ("app.py", "test_app.py"):
        (path / "service" / name).write_text((DEMO_SERVICE / name).read_text())
    (path / "service" / "requirements-release.txt").write_text(SERVICE_MANIFEST)
    _git(path, "add", "requirements.txt", "app.py", "service")
    _git(path, "commit", "-q", "-m", FIRST_COMMIT)
    return path


def recreate_demo_repository(path: Path, requirements: str = DEMO_REQUIREMENTS) -> Path:
    """A new demo repository at ``path``, replacing one a previous demo left there.

    Its ``immune/*`` branches and merges were made for patches of another database; kept,
    the new database's first patch would collide with a branch of the same name. Only a
    folder that is a demo repository (its first commit is the demo's) is removed.
    """
    if path.exists():
        if not _is_demo_repository(path):
            raise RuntimeError(f"{path} exists and is not a demo repository; move it away "
                               "and run the demo again")
        shutil.rmtree(path)
    return ensure_demo_repository(path, requirements)


def _is_demo_repository(path: Path) -> bool:
    if not (path / ".git").is_dir():
        return False
    result = subprocess.run(
        ["git", "-C", str(path), "log", "--max-parents=0", "--format=%s", "HEAD"],
        capture_output=True, text=True, check=False)
    return result.returncode == 0 and result.stdout.strip() == FIRST_COMMIT


@contextlib.contextmanager
def proposals_left_in_review() -> Iterator[None]:
    """Proposals go straight to review while the demo builds its corpus.

    WARGAME_AUTO (on in production) routes every proposal to a wargame as it is made: with
    a broker, queued for a worker, its APVs in ``patch_proposed``/``validating`` until one
    runs it. The corpus gives an APV two code patch revisions in a row (ineffective, then
    effective), which a routed first revision refuses ("An APV changed while its patch was
    being made"), and the demo wargames the corpus itself, each revision once
    (``Demo.wargame_all``). So the demo, not WARGAME_AUTO, decides when its corpus is
    wargamed, in every profile; ML-first still routes once a model is active (demo-shop).
    """
    previous = settings.WARGAME_AUTO
    settings.WARGAME_AUTO = False
    try:
        yield
    finally:
        settings.WARGAME_AUTO = previous


class Demo:
    def __init__(self, *, say: Callable[[str], None], ab_rate: float = 1.0):
        self.say, self.ab_rate = say, ab_rate
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def _step(self, message: str) -> None:
        self.say(f"[{self.elapsed():6.1f}s] {message}")

    # -- the steps ------------------------------------------------------------------------------

    def advisories(self) -> None:
        report = advisories_import(sources=[str(BUNDLED_ADVISORIES),
                                            str(DEMO_SERVICE / "advisories")],
                                   source_name="immune-demo")
        if report.failed:
            raise RuntimeError(f"bundled advisories failed to import: {report.failures}")
        self._step(f"advisories: {report.created} created, {report.updated} updated, "
                   f"{report.unchanged} unchanged")

    def project(self, name: str, requirements: str, description: str) -> Project:
        path = Path(settings.IMMUNE_DATA_DIR) / "repos" / name
        project = Project.objects.filter(name=name).first()
        if project is None:
            repo = recreate_demo_repository(path, requirements)
            project = project_add(name=name, path=str(repo), description=description)
        else:
            repo = ensure_demo_repository(path, requirements)
        if not project.service_command:
            project_update(project=project, service={
                "service_command": SERVICE_COMMAND, "service_ready_path": "/health",
                "test_command": SERVICE_TEST_COMMAND})
        result = project_scan(project=project)
        self._step(f"project {name} ({repo}): {result.dependencies} dependencies, "
                   f"{len(result.apvs.current)} APVs ({len(result.apvs.created)} new)")
        return project

    def patches(self, project: Project, *, with_bad_upgrades: bool = True) -> list[Patch]:
        """Bad upgrades first (so the good one stays current), then a patch for every open
        APV, then the code patches. Returns the patches made now."""
        made: list[Patch] = []
        if with_bad_upgrades:
            for package, target in BAD_UPGRADES.get(project.name, {}).items():
                apvs = list(APV.objects.filter(project=project, status=APVStatus.OPEN,
                                               dependency__normalised_name=package)
                            .select_related("project", "dependency", "advisory"))
                if apvs:
                    made.append(patch_propose_upgrade(apvs=apvs, target_version=target))
                    # Routing may have queued a wargame; without a worker the demo runs it,
                    # so the APVs are back in review before the good upgrade is proposed.
                    self.run_queued(project, quiet=True)
                    made.append(patch_propose_upgrade(apvs=apvs))
        proposals = patches_propose(project=project)
        made += proposals.proposed
        code = self._code_patches(project)
        made += code
        bad = len(BAD_UPGRADES.get(project.name, {})) if with_bad_upgrades else 0
        self._step(f"patches for {project.name}: {len(made) - len(code)} upgrade(s) "
                   f"({bad} of them deliberately bad), "
                   f"{len(proposals.manual)} manual, {len(code)} code patch(es)")
        return made

    def _code_patches(self, project: Project) -> list[Patch]:
        made = []
        for cwe, kinds in CODE_PATCHES.get(project.name, []):
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

    def wargame_all(self, project: Project) -> None:
        """Route every patch of the project through ML-first: with no model yet, each goes
        to a wargame (each revision once, ever), and its verdict becomes a label."""
        from apps.ml.services import ml_first_route
        from apps.wargaming.models import WargameRun
        from apps.wargaming.services import wargame_execute

        patches = list(Patch.objects.filter(project=project).exclude(
            strategy=PatchStrategy.MANUAL).order_by("id"))
        for i, patch in enumerate(patches, start=1):
            run = WargameRun.objects.filter(patch=patch, patch_revision=patch.revision).first()
            if run is None:
                run = ml_first_route(patch=patch, trigger="demo").run
            if run is not None and run.state == "queued":
                run = wargame_execute(run=run)  # no worker took it (outside eager mode)
            if run is not None:
                run.refresh_from_db()
                self._verdict(i, len(patches), patch, run)

    def run_queued(self, project: Project, *, quiet: bool = False) -> None:
        """Runs that routing queued and no worker has taken yet (outside eager mode;
        in eager mode they ran already), then every run of the project with its verdict."""
        from apps.wargaming.models import WargameRun
        from apps.wargaming.services import wargame_execute

        for run in WargameRun.objects.filter(patch__project=project, state="queued"):
            wargame_execute(run=run)
        if quiet:
            return
        runs = list(WargameRun.objects.filter(patch__project=project)
                    .select_related("patch").order_by("id"))
        for i, run in enumerate(runs, start=1):
            self._verdict(i, len(runs), run.patch, run)

    def _verdict(self, i: int, n: int, patch: Patch, run) -> None:
        note = " (A/B shadow run)" if run.trigger == "ab_test" else ""
        self._step(f"  wargame {i}/{n} {patch.title} r{patch.revision}: "
                   f"{run.verdict or run.state}{note}")

    def train(self) -> None:
        from apps.ml.errors import NotEnoughLabels
        from apps.ml.models import ModelVersion
        from apps.ml.services import model_train

        active = ModelVersion.objects.filter(is_active=True).defer("artifact").first()
        if active is not None:
            # Run again: keep the model the A/B report is about (beat or train_model train
            # new versions; a lead activates them).
            self._step(f"model v{active.version} is active; not retrained")
            return
        try:
            version = model_train(trigger="demo", activate=True)
        except NotEnoughLabels as exc:
            self._step(f"model: not trained — {exc.message}")
            return
        self._step(
            f"model v{version.version} ({version.algorithm}) on {version.training_size} "
            f"labels {version.class_balance}: {version.cv_folds}-fold CV accuracy "
            f"{version.cv_accuracy:.2f}, F1 {version.cv_f1:.2f}, ROC AUC "
            f"{version.cv_roc_auc if version.cv_roc_auc is None else round(version.cv_roc_auc, 2)}"
            f", Brier {version.cv_brier:.3f}; active: {version.is_active}")

    def ab_enable(self) -> None:
        from apps.ab_testing.services import experiment_enable

        experiment = experiment_enable(rate=self.ab_rate, via="demo")
        self._step(f"A/B testing enabled (experiment #{experiment.pk}, rate "
                   f"{experiment.rate:.2f})")

    def summary(self) -> None:
        from django.db.models import Count

        from apps.ab_testing.selectors import accuracy_report
        from apps.ml.models import Prediction

        routes = dict(Prediction.objects.exclude(model_version=None).order_by()
                      .values_list("route").annotate(n=Count("id")))
        unmodelled = Prediction.objects.filter(model_version=None).count()
        report = accuracy_report()
        self._step(f"ML-first routes: {unmodelled} to a wargame while no model was active; "
                   f"then by the model {routes.get('ml', 0)} to review with the prediction, "
                   f"{routes.get('wargame', 0)} to a wargame (not sure enough)")
        if report["sample_size"]:
            cm, (low, high) = report["confusion_matrix"], report["accuracy_ci95"]
            self._step(f"A/B report: {report['sample_size']} compared; TP {cm['tp']} FP "
                       f"{cm['fp']} FN {cm['fn']} TN {cm['tn']}; accuracy "
                       f"{report['accuracy']:.2f} (95 % CI {low:.2f}–{high:.2f})")
        else:
            self._step("A/B report: nothing compared yet")


def run_demo(*, say: Callable[[str], None], wargame: bool = True,
             ab_rate: float = 1.0) -> float:
    """The whole demo (``wargame=False``: the first project's patches only); returns the
    seconds it took."""
    demo = Demo(say=say, ab_rate=ab_rate)
    demo.advisories()
    corpus = demo.project("demo", DEMO_REQUIREMENTS, "Demo service with vulnerable pins")
    with proposals_left_in_review():
        demo.patches(corpus, with_bad_upgrades=wargame)
    if not wargame:
        return demo.elapsed()
    demo.wargame_all(corpus)
    demo.train()
    demo.ab_enable()
    shop = demo.project("demo-shop", SHOP_REQUIREMENTS, "Second demo service, newer pins")
    demo.patches(shop)
    demo.run_queued(shop)
    demo.summary()
    return demo.elapsed()
