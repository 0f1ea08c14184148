"""ML-first and A/B testing over the API and commands, without a trained model: a fresh
install wargames everything and says so; training refuses without labels; permissions
and bad input are checked on every write."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from apps.ab_testing.models import Experiment
from apps.ab_testing.selectors import wilson_interval
from apps.ml.models import Prediction
from apps.wargaming.models import WargameRun

pytestmark = pytest.mark.django_db


def _api(user=None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


@pytest.fixture
def patch(settings, tmp_path):
    from tests.factories import pyyaml_upgrade_patch

    return pyyaml_upgrade_patch(tmp_path)


def test_without_a_model_ml_first_routes_to_a_wargame_and_says_why(patch, reviewer):
    response = _api(reviewer).post("/api/v1/wargaming/ml-first", {"patch": patch.pk},
                                   format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["route"] == "wargame" and body["active_model"] is None
    assert "no active model" in body["reason"]
    assert body["prediction"]["probability"] is None
    run = WargameRun.objects.get(pk=body["run"])
    assert run.patch_id == patch.pk and body["run_created"] is True
    again = _api(reviewer).post("/api/v1/wargaming/ml-first", {"patch": patch.pk},
                                format="json").json()
    assert again["run"] == run.pk and again["run_created"] is False  # one run per revision
    assert Prediction.objects.filter(patch=patch).count() == 2
    status = _api(reviewer).get("/api/v1/ab-testing/status").json()
    assert status["active_model"] is None and "every patch is wargamed" in status["routing"]


def test_ml_first_needs_a_reviewer_and_a_real_patch(patch, django_user_model):
    assert _api().post("/api/v1/wargaming/ml-first", {"patch": patch.pk}).status_code == 401
    nobody = django_user_model.objects.create_user("nobody", password="x")
    assert _api(nobody).post("/api/v1/wargaming/ml-first",
                             {"patch": patch.pk}).status_code == 403


def test_ml_first_rejects_bad_input(reviewer):
    bad = _api(reviewer).post("/api/v1/wargaming/ml-first", {"patch": "x"}, format="json")
    assert bad.status_code == 400 and "patch" in bad.json()["error"]["details"]
    missing = _api(reviewer).post("/api/v1/wargaming/ml-first", {"patch": 999999},
                                  format="json")
    assert missing.status_code == 404


def test_training_refuses_without_enough_labels_and_says_how_many():
    with pytest.raises(CommandError, match="0 effective and 0 not effective; each class "
                                           "needs at least 5"):
        call_command("train_model", stdout=io.StringIO())


def test_ab_testing_enable_disable_need_a_lead(reviewer, lead):
    assert _api(reviewer).post("/api/v1/ab-testing/enable", {"rate": 0.5}).status_code == 403
    assert _api().get("/api/v1/ab-testing/status").status_code == 401
    enabled = _api(lead).post("/api/v1/ab-testing/enable", {"rate": 0.25}, format="json")
    assert enabled.status_code == 200 and enabled.json()["experiment"]["rate"] == 0.25
    assert enabled.json()["experiment"]["enabled_by"] == "leo"
    assert _api(reviewer).get("/api/v1/ab-testing/status").json()["enabled"] is True
    # a new rate closes the old experiment and opens another: results keep their rate
    _api(lead).post("/api/v1/ab-testing/enable", {"rate": 0.5}, format="json")
    assert list(Experiment.objects.order_by("id").values_list("rate", "enabled")) == [
        (0.25, False), (0.5, True)]
    assert _api(reviewer).post("/api/v1/ab-testing/disable").status_code == 403
    disabled = _api(lead).post("/api/v1/ab-testing/disable")
    assert disabled.status_code == 200 and disabled.json()["enabled"] is False
    assert Experiment.objects.get(rate=0.5).disabled_by_name == "leo"


@pytest.mark.parametrize("rate", [0, -0.1, 1.5, "lots"])
def test_ab_testing_rejects_a_bad_rate(lead, rate):
    response = _api(lead).post("/api/v1/ab-testing/enable", {"rate": rate}, format="json")
    assert response.status_code == 400 and "rate" in response.json()["error"]["details"]
    assert not Experiment.objects.exists()


def test_ab_testing_command():
    out = io.StringIO()
    call_command("ab_testing", "enable", "--rate", "0.2", stdout=out)
    assert "enabled at rate 0.20" in out.getvalue()
    assert "none (every patch is wargamed)" in out.getvalue()
    out = io.StringIO()
    call_command("ab_testing", "status", stdout=out)
    assert "results: none compared yet" in out.getvalue()
    call_command("ab_testing", "disable", stdout=io.StringIO())
    assert not Experiment.objects.filter(enabled=True).exists()
    with pytest.raises(CommandError, match="rate must be in"):
        call_command("ab_testing", "enable", "--rate", "2", stdout=io.StringIO())


def test_accuracy_report_without_results_and_bad_window(reviewer):
    api = _api(reviewer)
    empty = api.get("/api/v1/wargaming/ml/accuracy").json()
    assert empty["sample_size"] == 0 and empty["accuracy"] is None
    assert empty["confusion_matrix"] == {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
    bad = api.get("/api/v1/wargaming/ml/accuracy", {"since": "2026-02-01T00:00:00Z",
                                                     "until": "2026-01-01T00:00:00Z"})
    assert bad.status_code == 400 and "until" in bad.json()["error"]["details"]
    assert api.get("/api/v1/wargaming/ml/accuracy", {"since": "yesterday"}).status_code == 400


def test_wilson_interval():
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(5, 5)[1] == 1.0 and wilson_interval(5, 5)[0] > 0.5
    assert wilson_interval(0, 0) is None


def test_training_through_the_api_is_for_leads(reviewer, lead, django_capture_on_commit_callbacks):
    assert _api(reviewer).post("/api/v1/ml/train").status_code == 403
    with django_capture_on_commit_callbacks(execute=True):
        queued = _api(lead).post("/api/v1/ml/train")
    assert queued.status_code == 202
    assert queued.json() == {"queued": True, "labels": {"effective": 0, "not_effective": 0}}
    assert _api(reviewer).get("/api/v1/ml/models/").json()["count"] == 0  # refused: no labels


def test_experiments_in_the_admin_need_a_lead(client, reviewer, lead):
    client.force_login(reviewer)
    toggle = "/admin/ab_testing/experiment/toggle/"
    assert client.post(toggle, {"action": "enable", "rate": "0.3"}).status_code == 403
    client.force_login(lead)
    client.post(toggle, {"action": "enable", "rate": "0.3"})
    assert Experiment.objects.get(enabled=True).via == "admin"
    client.post(toggle, {"action": "disable"})
    assert not Experiment.objects.filter(enabled=True).exists()
    page = client.get("/admin/ab_testing/abtestresult/").content.decode()
    assert "No compared pairs yet." in page
