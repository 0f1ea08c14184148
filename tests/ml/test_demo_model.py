"""ML-first and A/B testing on real wargame results: ``manage.py demo`` wargames its corpus
for real (once per session, shared with the browser tests), trains on those verdicts,
routes a second project's patches and shadow-wargames the ML-routed ones. Every check below
recomputes a number from the stored runs and compares it with what the model, the routes
and the accuracy report say."""

from __future__ import annotations

import io

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection
from django.test import Client
from rest_framework.test import APIClient

from apps.ab_testing.models import ABTestResult
from apps.ab_testing.selectors import confusion
from apps.decisions.models import DecisionAudit
from apps.ml import services, training
from apps.ml.errors import ModelIntegrityError
from apps.ml.models import ModelActivation, ModelVersion, Prediction
from apps.reviews.models import APV
from apps.wargaming.models import WargameRun

pytestmark = [pytest.mark.slow, pytest.mark.django_db, pytest.mark.timeout(1200)]

LABELS = {"patch_effective": True, "patch_ineffective": False, "regression": False}


@pytest.fixture
def demo(settings, tmp_path, demo_template):
    """``manage.py demo``'s rows, repositories and output (its run is shared by the session,
    tests/conftest.py: it wargames for real and takes a minute or more)."""
    settings.IMMUNE_DATA_DIR = tmp_path
    return demo_template.load(tmp_path, wargame=True)


def _api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_demo_trains_on_real_verdicts_and_reports_real_accuracy(
        demo, reviewer, lead, django_capture_on_commit_callbacks):
    model = ModelVersion.objects.get(is_active=True)
    assert model.trigger == "demo" and f"model v{model.version}" in demo

    # The training set is exactly the label verdicts of the corpus runs before the model.
    corpus = WargameRun.objects.filter(patch__project__name="demo", state="finished",
                                       pk__lte=model.last_label_run_id)
    labels = [LABELS[v] for v in corpus.values_list("verdict", flat=True) if v in LABELS]
    assert model.training_size == len(labels) >= 20
    assert model.class_balance == {"effective": sum(labels),
                                   "not_effective": len(labels) - sum(labels)}
    assert model.class_balance["not_effective"] >= 5 and model.class_balance["effective"] >= 5
    assert {c["algorithm"] for c in model.candidates} == set(training.CANDIDATES)
    chosen = next(c for c in model.candidates if c["chosen"])
    assert chosen["algorithm"] == model.algorithm and chosen["brier"] == model.cv_brier
    # Ten packages and the demo service: chosen by the leave-one-package-out Brier score.
    assert model.evaluation["selected_by"] == "grouped_brier"
    assert chosen["grouped"]["brier"] <= min(c["grouped"]["brier"]
                                             for c in model.candidates) + 1e-4
    assert chosen["grouped"]["brier"] == pytest.approx(model.grouped_brier)
    assert set(model.training_packages) == {
        r.patch.package for r in corpus.select_related("patch")
        if r.verdict in LABELS and r.advisories}
    assert 0 <= model.cv_brier <= 1 and model.cv_accuracy > 0.5
    # The activation is audited.
    assert ModelActivation.objects.filter(model_version=model, via="training").exists()

    # Before the model, the corpus was routed to wargames, and the API said why.
    corpus_routes = Prediction.objects.filter(patch__project__name="demo")
    assert corpus_routes.count() >= 20
    assert set(corpus_routes.values_list("route", "reason")) == {
        ("wargame", "no active model: every patch is wargamed")}

    # Routes: the second project's proposals were predicted by the model; each route follows
    # from the stored confidence and threshold, and a reload of the stored artifact gives
    # the same probability for the stored features.
    predictions = list(Prediction.objects.filter(patch__project__name="demo-shop",
                                                 model_version=model))
    assert predictions, demo
    routes = {p.route for p in predictions}
    assert "ml" in routes, demo
    pipeline = services.model_load(model)
    for p in predictions:
        assert p.route == ("ml" if p.confidence >= p.threshold else "wargame")
        again, _ = training.explain(pipeline, p.features, model.feature_means)
        assert again == pytest.approx(p.probability, abs=1e-9)
        assert p.latency_ms is not None and p.features["strategy"] == p.patch.strategy
        if p.route == "wargame":
            assert p.wargame_run is not None and p.wargame_run.state == "finished"
    # ML-routed APVs were not held back: they wait for review.
    ml_routed = [p for p in predictions if p.route == "ml" and p.patch.apvs.exists()]
    for p in ml_routed:
        assert set(p.patch.apvs.values_list("status", flat=True)) <= {"pending_review"}

    # A/B: the demo samples every ML-routed patch (rate 1.0); each pair agrees with its run.
    results = list(ABTestResult.objects.select_related("prediction", "wargame_run"))
    assert len(results) == len([p for p in predictions if p.route == "ml"]) > 0
    for r in results:
        assert r.prediction.route == "ml" and r.prediction.ab_sampled
        assert r.wargame_run.trigger == "ab_test" and r.wargame_verdict == r.wargame_run.verdict
        if r.wargame_verdict in LABELS:
            assert r.actual_effective is LABELS[r.wargame_verdict]
            assert r.correct is (r.predicted_effective == r.actual_effective)
        assert r.model_version_id == model.pk

    # The accuracy report is the confusion matrix of the stored pairs.
    counted = [(r.predicted_effective, r.actual_effective) for r in results
               if r.correct is not None]
    expected = confusion(counted)
    api = _api(reviewer)
    report = api.get("/api/v1/wargaming/ml/accuracy").json()
    assert report["confusion_matrix"] == expected["confusion_matrix"]
    assert report["sample_size"] == len(counted) > 0
    assert report["accuracy"] == pytest.approx(sum(p == a for p, a in counted) / len(counted))
    low, high = report["accuracy_ci95"]
    assert low <= report["accuracy"] <= high
    assert api.get("/api/v1/wargaming/ml/accuracy").json()["cached"] is True
    # A new result makes the cached report stale at once: record one pair again.
    from apps.ab_testing.services import ab_result_record

    again = results[0]
    run = again.wargame_run
    again.delete()
    with django_capture_on_commit_callbacks(execute=True):
        assert ab_result_record(run=run) is not None
    fresh = api.get("/api/v1/wargaming/ml/accuracy").json()
    assert fresh["cached"] is False and fresh["sample_size"] == report["sample_size"]
    only_other = api.get("/api/v1/wargaming/ml/accuracy", {"model_version": model.version + 1})
    assert only_other.json()["sample_size"] == 0
    listed = api.get("/api/v1/ab-testing/results").json()
    assert listed["count"] == len(results)

    # A reviewer's decision on an ML-routed APV keeps the prediction they saw.
    apv = APV.objects.filter(current_patch__predictions__route="ml",
                             status="pending_review").first()
    assert apv is not None, "no ML-routed APV waits for review"
    response = api.post(f"/api/v1/apvs/{apv.code}/decisions/", {
        "decision": "reject", "justification": "Prefer to wait for the next release.",
        "confidence": 0.7, "patch_revision": apv.current_patch.revision}, format="json")
    assert response.status_code == 201, response.json()
    snapshot = DecisionAudit.objects.get(decision__apv=apv).snapshot
    assert snapshot["prediction"]["route"] == "ml"
    assert snapshot["prediction"]["model_version"] == model.version
    decided = [r for r in api.get("/api/v1/ab-testing/results").json()["results"]
               if r["patch"] == apv.current_patch_id]
    assert [r["reviewer_decision"] for r in decided] == ["reject"]

    # A second demo adds nothing: no new runs, and the model the report is about is kept.
    runs, versions = WargameRun.objects.count(), ModelVersion.objects.count()
    call_command("demo", stdout=io.StringIO())
    assert WargameRun.objects.count() == runs and ModelVersion.objects.count() == versions

    # The weekly retrain: the second project's runs are new labels, so beat trains v2 —
    # and leaves it inactive (replacing the active model is a lead's call); with no new
    # labels since, it does nothing.
    from apps.ml.tasks import retrain

    assert retrain.delay().get() == model.version + 1
    v2 = ModelVersion.objects.get(version=model.version + 1)
    assert not v2.is_active and v2.trigger == "beat" and v2.training_size > model.training_size
    assert retrain.delay().get() is None

    # Activating it is audited, and a reviewer may not do it (API and admin).
    admin_client = Client()
    admin_client.force_login(reviewer)
    page = f"/admin/ml/modelversion/{v2.pk}/activate/"
    assert admin_client.post(page, {"reason": "reviewers cannot do this"}).status_code == 403
    refused = api.post(f"/api/v1/ml/models/{v2.version}/activate",
                       {"reason": "newer labels, better CV"}, format="json")
    assert refused.status_code == 403
    done = _api(lead).post(f"/api/v1/ml/models/{v2.version}/activate",
                           {"reason": "newer labels, better CV"}, format="json",
                           REMOTE_ADDR="10.1.2.3")
    assert done.status_code == 200 and done.json()["is_active"] is True
    audit = ModelActivation.objects.get(model_version=v2)
    assert (audit.actor_name, audit.previous_id, audit.client_ip) == ("leo", model.pk,
                                                                      "10.1.2.3")
    assert ModelVersion.objects.filter(is_active=True).count() == 1
    # ... and back to v1 through the admin's confirmation page, audited as such.
    admin_client.force_login(lead)
    assert "Confirm: activate" in admin_client.get(
        f"/admin/ml/modelversion/{model.pk}/activate/").content.decode()
    admin_client.post(f"/admin/ml/modelversion/{model.pk}/activate/",
                      {"reason": "v2 has not been A/B tested yet"})
    back = ModelActivation.objects.filter(model_version=model, via="admin").get()
    assert back.previous_id == v2.pk and back.actor_name == "leo"
    assert ModelVersion.objects.get(is_active=True).pk == model.pk
    page = admin_client.get("/admin/ab_testing/abtestresult/").content.decode()
    assert f"TP {expected['confusion_matrix']['tp']}" in page

    # A tampered artifact is refused on load, and routing falls back to a wargame.
    with connection.cursor() as cursor:
        cursor.execute("UPDATE ml_modelversion SET artifact = %s WHERE id = %s",
                       [b"not a model", model.pk])
    services._loaded.clear()
    cache.delete(services.prediction_cache_key(model, predictions[0].features))
    with pytest.raises(ModelIntegrityError, match="does not match"):
        services.model_load(ModelVersion.objects.get(pk=model.pk))
    patch = predictions[0].patch
    routed = api.post("/api/v1/wargaming/ml-first", {"patch": patch.pk}, format="json").json()
    assert routed["route"] == "wargame" and "does not match" in routed["reason"]
