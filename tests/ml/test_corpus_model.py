"""The model trained from the wargame corpus (a small excerpt of the real
data/corpus/wargames.jsonl, tests/ml/fixtures/corpus-sample.jsonl: real runs, not
hand-written): leave-one-package-out evaluation beside the stratified one, per package,
with 95 % intervals and calibration, in the model version and its admin page; routing by
the grouped figures for a package the model never saw; a patch that does not compile never
going to review as effective; the A/B report per package."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import Client

from apps.ml import services
from apps.ml.features import FEATURE_SET
from apps.ml.models import ModelVersion, Prediction
from apps.wargaming.corpus import DEMO_SERVICE, read_corpus
from tests.factories import make_repo, pyyaml_upgrade_patch
from tests.wargaming.pocrun import ADVISORY_DB

pytestmark = pytest.mark.django_db

SAMPLE = Path(__file__).parent / "fixtures" / "corpus-sample.jsonl"


def _import_advisories(rows: list[dict]) -> None:
    """The advisories the rows' exploits cover, from the PyPA database (and the demo
    service's own): a corpus row teaches only with its advisory's facts."""
    from apps.advisories.services import advisories_import

    sources = {str(DEMO_SERVICE / "advisories")}
    for row in rows:
        for advisory in row["advisory_ids"]:
            path = ADVISORY_DB / row["package"] / f"{advisory}.yaml"
            if path.is_file():
                sources.add(str(path))
    if not any("pypa" in s or s.endswith(".yaml") for s in sources):
        pytest.skip(f"no PyPA advisory data at {ADVISORY_DB}")
    report = advisories_import(sources=sorted(sources), announce=False)
    assert not report.failed, report.failures


@pytest.fixture
def rows() -> list[dict]:
    found = read_corpus(SAMPLE)
    _import_advisories(found)
    return found


@pytest.fixture
def model(rows) -> ModelVersion:
    return services.model_train(trigger="test", corpus=SAMPLE, activate=True)


def test_the_sample_is_real_corpus_rows():
    text = SAMPLE.read_text().splitlines()
    assert text[0].startswith("# ")
    found = read_corpus(SAMPLE)
    assert len(found) == len(text) - 1
    assert {r["strategy"] for r in found} == {"dependency_upgrade", "code_patch"}
    assert all(r["run_id"] and r["run_at"] and r["exploit"] for r in found)


def test_training_from_the_corpus_reports_grouped_figures_with_intervals(rows, model, lead):
    labels = [r for r in rows if r["verdict"] in services.LABELS]
    packages = {r["package"] for r in labels}
    assert model.training_size == len(labels)
    assert model.training_sources["corpus_labels"] == len(labels)
    assert model.training_sources["corpus_rows"] == len(rows)
    assert set(model.training_packages) == packages and len(packages) >= 3
    assert model.feature_set == FEATURE_SET

    grouped = model.evaluation["grouped"]
    assert grouped["scheme"] == "leave one package out" and grouped["packages"] == len(packages)
    assert grouped["n"] == len(labels) and model.grouped_accuracy == grouped["accuracy"]
    per_package = {row["package"]: row for row in grouped["per_package"]}
    assert set(per_package) == packages
    for package, row in per_package.items():
        truth = [r for r in labels if r["package"] == package]
        assert row["n"] == len(truth)
        assert row["effective"] == sum(r["verdict"] == "patch_effective" for r in truth)
        low, high = row["accuracy_ci95"]
        assert 0 <= low <= row["accuracy"] <= high <= 1
    # The pooled grouped accuracy is the per-package accuracies weighted by their size.
    pooled = sum(r["accuracy"] * r["n"] for r in per_package.values()) / len(labels)
    assert grouped["accuracy"] == pytest.approx(pooled)
    for figures in (grouped, model.evaluation["stratified"]):
        low, high = figures["accuracy_ci95"]
        assert low <= figures["accuracy"] <= high
        low, high = figures["brier_ci95"]
        assert low <= figures["brier"] <= high
        assert sum(b["n"] for b in figures["calibration"]) == len(labels)
    # Chosen by the grouped Brier score; both candidates were evaluated both ways.
    assert model.evaluation["selected_by"] == "grouped_brier"
    chosen = next(c for c in model.candidates if c["chosen"])
    assert chosen["grouped"]["brier"] <= min(c["grouped"]["brier"]
                                             for c in model.candidates) + 1e-4
    assert model.grouped_brier == pytest.approx(chosen["grouped"]["brier"])

    # The admin's model version page shows them, with the calibration chart.
    client = Client()
    client.force_login(lead)
    page = client.get(f"/admin/ml/modelversion/{model.pk}/change/").content.decode()
    assert "Leave one package out" in page and 'id="per-package"' in page
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="calibration-chart"' in page
    for row in grouped["per_package"]:
        assert f"<td>{row['package']}</td>" in page


def test_train_model_command_reads_the_corpus_file(rows):
    text = io.StringIO()
    call_command("train_model", "--corpus", str(SAMPLE), stdout=text)
    version = ModelVersion.objects.get()
    assert version.training_sources["corpus"] == str(SAMPLE)
    assert version.training_sources["corpus_skipped"] == {
        "no label verdict (error)": 1, "no label verdict (inconclusive)": 1}
    out = text.getvalue()
    assert "leave one package out" in out and f"accuracy {version.grouped_accuracy:.3f}" in out
    for package in version.training_packages:
        assert package in out
    assert json.loads(json.dumps(version.evaluation))["grouped"]["per_package"]


def _grouped_accuracy(model: ModelVersion, accuracy: float) -> None:
    """Make the model's leave-one-package-out accuracy on upgrades ``accuracy`` (what a
    weaker or stronger model would have measured)."""
    evaluation = ModelVersion.objects.get(pk=model.pk).evaluation
    evaluation["grouped"]["per_strategy"]["dependency_upgrade"]["accuracy"] = accuracy
    ModelVersion.objects.filter(pk=model.pk).update(evaluation=evaluation)


def test_an_unseen_package_is_wargamed_unless_the_grouped_accuracy_is_enough(model, tmp_path,
                                                                            settings):
    settings.ML_FIRST_THRESHOLD = threshold = 0.8
    per_strategy = model.evaluation["grouped"]["per_strategy"]
    assert set(per_strategy) == {"dependency_upgrade", "code_patch"}
    assert services.grouped_accuracy_for(model, "dependency_upgrade") == \
        per_strategy["dependency_upgrade"]["accuracy"]
    patch = pyyaml_upgrade_patch(tmp_path)  # routed on proposal: a model is active
    assert "pyyaml" not in model.training_packages
    first = Prediction.objects.get(patch=patch)
    assert first.features["target_leaves_affected"] == "yes"
    assert first.features["fix_distance"] == "at"
    assert first.confidence >= threshold, "the sample's model should be sure of 5.3.1 → 5.4"
    # A model whose leave-one-package-out accuracy is below the threshold: to a wargame.
    _grouped_accuracy(model, threshold - 0.1)
    routed = services.ml_first_route(patch=patch, trigger="test")
    assert routed.prediction.route == "wargame" and routed.run is not None
    assert "never seen in training" in routed.prediction.reason
    assert routed.prediction.confidence >= threshold
    # Good enough on unseen packages: the model decides.
    _grouped_accuracy(model, threshold)
    assert services.ml_first_route(patch=patch, trigger="test").prediction.route == "ml"
    # A package it has seen is the model's whatever its grouped accuracy.
    _grouped_accuracy(model, 0.0)
    ModelVersion.objects.filter(pk=model.pk).update(
        training_packages=[*model.training_packages, "pyyaml"])
    assert services.ml_first_route(patch=patch, trigger="test").prediction.route == "ml"
    # A model trained on another feature set is not asked at all.
    ModelVersion.objects.filter(pk=model.pk).update(feature_set=FEATURE_SET - 1)
    stale = services.ml_first_route(patch=patch, trigger="test").prediction
    assert stale.route == "wargame" and "feature set" in stale.reason


def _demo_service_project(tmp_path):
    """A scanned repository with the demo service (pinned as released, so the demo
    advisories raise APVs), as ``manage.py demo`` makes it."""
    from apps.advisories.services import advisories_import
    from apps.inventory.services import project_add, project_scan

    advisories_import(sources=[str(DEMO_SERVICE / "advisories")], announce=False)
    files = {f"service/{name}": (DEMO_SERVICE / name).read_text()
             for name in ("app.py", "test_app.py")}
    files["service/requirements-release.txt"] = "immune-demo-service==1.0.0\n"
    repo = make_repo(tmp_path / "svc", files)
    return project_scan(project=project_add(name="svc", path=str(repo))).project


def _broken(diff: str, repo: Path) -> str:
    """The effective CWE-89 fix with one more line that is not Python (a stray colon)."""
    subprocess.run(["git", "-C", str(repo), "apply", "-"], input=diff, text=True, check=True)
    app = repo / "service" / "app.py"
    source = app.read_text().replace('            query = "SELECT name, price FROM items '
                                     'WHERE name = ?"',
                                     '            query = "SELECT name, price FROM items '
                                     'WHERE name = ?":', 1)
    assert source != app.read_text()
    app.write_text(source)
    broken = subprocess.run(["git", "-C", str(repo), "diff"], capture_output=True, text=True,
                            check=True).stdout
    subprocess.run(["git", "-C", str(repo), "checkout", "--", "."], check=True)
    return broken


def test_a_patch_that_does_not_compile_is_never_routed_to_review_as_effective(model,
                                                                            tmp_path):
    from apps.ab_testing.models import ABTestResult
    from apps.ab_testing.services import experiment_enable
    from apps.reviews.models import APV
    from apps.reviews.services.patches import patch_submit_code
    from apps.wargaming.models import WargameRun

    experiment_enable(rate=1.0, via="test")  # every ML-routed patch would be shadowed
    project = _demo_service_project(tmp_path)
    apv = APV.objects.get(project=project, advisory__osv_id="IMMUNE-DEMO-CWE-89")
    good = (DEMO_SERVICE / "patches" / "cwe-89-effective.diff").read_text()
    patch = patch_submit_code(apv=apv, diff=_broken(good, Path(project.path)),
                              title="Fix CWE-89 with a parameterised query")
    prediction = Prediction.objects.get(patch=patch)
    assert prediction.features["compiles"] == "no"
    assert prediction.predicted_effective is False and prediction.probability == 0.0
    assert prediction.route == "ml" and "does not compile" in prediction.reason
    apv.refresh_from_db()
    assert apv.status == "pending_review"
    # Not the model's call: no A/B shadow run for it.
    assert not WargameRun.objects.filter(patch=patch).exists()
    assert not ABTestResult.objects.exists()
    # What the model itself would have said about the same change, compiling: effective.
    pipeline = services.model_load(model)
    p_compiling, _ = services._training().explain(
        pipeline, {**prediction.features, "compiles": "yes"}, model.feature_means)
    assert p_compiling >= 0.5, "the guard, not the model, keeps this patch from review"

    # The same fix as it should be compiles, and the model decides.
    fixed = patch_submit_code(apv=APV.objects.get(pk=apv.pk), diff=good,
                              title="Fix CWE-89 with a parameterised query")
    assert Prediction.objects.get(patch=fixed).features["compiles"] == "yes"


def test_the_ab_report_per_package(model, tmp_path):
    from apps.ab_testing.selectors import accuracy_by_package
    from apps.ab_testing.services import ab_result_record, experiment_enable
    from apps.wargaming import runner
    from apps.wargaming.services import _claim, _store

    experiment_enable(rate=1.0, via="test")
    _grouped_accuracy(model, 1.0)  # the model may route a package it never saw
    patch = pyyaml_upgrade_patch(tmp_path)
    prediction = Prediction.objects.get(patch=patch)
    assert prediction.route == "ml"  # 1.0 of ML-routed patches are sampled: a shadow run
    run = prediction.wargame_run
    assert run is not None and run.trigger == "ab_test"
    assert _claim(run)
    run.refresh_from_db()
    run.advisories = [apv.advisory.osv_id for apv in patch.apvs.all()]
    run.save(update_fields=["advisories"])
    # The verdict a real run of this pair gives (tests/wargaming/test_runs.py proves it).
    _store(run, runner.RunResult("patch_effective", 0.95, "exploited before, blocked after",
                                 [], network_isolated=True, duration_s=1.0, sandbox={}))
    run.refresh_from_db()
    result = ab_result_record(run=run)
    assert result is not None and result.correct is prediction.predicted_effective
    (row,) = accuracy_by_package()
    assert (row["package"], row["sample_size"], row["unseen_by_model"]) == ("pyyaml", 1, 1)
    assert row["accuracy"] == (1.0 if result.correct else 0.0)


def test_the_corpus_report_sets_the_runs_beside_the_advisory_data(rows):
    from apps.ml.corpus_report import corpus_lessons

    lessons = {lesson["package"]: lesson for lesson in corpus_lessons(rows)}
    assert set(lessons) == {"django", "urllib3", "werkzeug", "rsa"}  # upgrades only
    django, urllib3 = lessons["django"], lessons["urllib3"]
    assert (django["vulnerable"], django["advisory_first_fixed"],
            django["exploit_first_fails_on"]) == ("3.2.13", "3.2.14", "3.2.14")
    assert django["advisory_fixed"][:2] == ["3.2.14", "4.0.6"]  # one fix per release line
    # The real runs agree with the PyPA ranges everywhere (4.0 and 2.0.2 are still open).
    assert all(lesson["agrees"] and not lesson["disagreements"] for lesson in lessons.values())
    assert urllib3["verdicts"] == {"patch_effective": 4, "patch_ineffective": 4}

    # Were 1.26.17 still exploitable (an incomplete fix), and 2.0.2 not (a fix the data
    # does not know), the report would name both.
    changed = [{**r, "verdict": {"1.26.17": "patch_ineffective", "2.0.2": "patch_effective"}
                .get(r["candidate_version"], r["verdict"])} if r["package"] == "urllib3"
               else r for r in rows]
    urllib3 = next(x for x in corpus_lessons(changed) if x["package"] == "urllib3")
    assert not urllib3["agrees"] and urllib3["exploit_first_fails_on"] == "2.0.2"
    assert {(d["release"], d["advisory"], d["exploit"], d["fix_distance"])
            for d in urllib3["disagreements"]} == {
        ("1.26.17", "fixed", "still works", "at"),
        ("2.0.2", "affected", "fails", "before_patch")}
    out = io.StringIO()
    call_command("corpus_report", "--corpus", str(SAMPLE), stdout=out)
    assert "django (django_pysec_2022_213.py, vulnerable 3.2.13): advisory fixed 3.2.14, " \
           "exploit first fails on 3.2.14" in out.getvalue()
