"""Domain metrics are read from the database at scrape time (issue 15), at a fixed number
of queries however many rows there are."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from tests.factories import pyyaml_upgrade_patch


def _scrape(client) -> dict[str, dict[tuple, float]]:
    text = client.get("/metrics").content.decode()
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = \
                sample.value
    return samples


@pytest.mark.django_db
def test_apvs_runs_decisions_and_predictions_are_counted_from_the_database(
        client, admin_user, reviewer, tmp_path):
    from apps.decisions.services import decision_record
    from apps.ml.models import Prediction
    from apps.reviews.models import APV
    from apps.wargaming.models import WargameRun

    patch = pyyaml_upgrade_patch(tmp_path)
    apv = patch.apvs.get()
    APV.objects.filter(pk=apv.pk).update(sla_due_at=timezone.now() - timedelta(days=1))
    for verdict, seconds in (("patch_effective", 12.0), ("patch_effective", 45.0),
                             ("error", 700.0)):
        WargameRun.objects.create(patch=patch, kind="package", state="finished",
                                  verdict=verdict, duration_s=seconds)
    WargameRun.objects.create(patch=patch, kind="http", state="queued")  # not finished
    Prediction.objects.create(patch=patch, patch_revision=patch.revision, threshold=0.8,
                              route="ml", reason="r", features={}, feature_hash="h",
                              latency_ms=3.0, trigger="test")

    client.force_login(admin_user)
    before = _scrape(client)
    apvs = before["immune_apvs"]
    assert apvs[(("severity", apv.severity), ("status", apv.status))] == 1
    assert before["immune_apvs_sla_breached"] == {(("severity", apv.severity),): 1}
    runs = before["immune_wargame_runs_total"]
    assert runs == {(("kind", "package"), ("verdict", "patch_effective")): 2,
                    (("kind", "package"), ("verdict", "error")): 1}
    duration = before["immune_wargame_duration_seconds_bucket"]
    assert duration[(("kind", "package"), ("le", "30.0"))] == 1
    assert duration[(("kind", "package"), ("le", "60.0"))] == 2
    assert duration[(("kind", "package"), ("le", "+Inf"))] == 3
    assert before["immune_wargame_duration_seconds_sum"][(("kind", "package"),)] == 757.0
    assert before["immune_prediction_seconds_bucket"][(("le", "0.005"),)] == 1
    assert before["immune_decision_wait_seconds_count"][()] == 0

    decision_record(apv_code=apv.code, reviewer=reviewer, decision="false_positive",
                    justification="Not reachable from our code paths.",
                    patch_revision=patch.revision)
    after = _scrape(client)
    decisions = after["immune_decisions_total"]
    assert sum(decisions.values()) == 1
    ((labels, _),) = decisions.items()
    assert dict(labels)["decision"] == "false_positive"
    # a closed APV no longer counts as breaching its SLA
    assert after.get("immune_apvs_sla_breached", {}) == {}


@pytest.mark.django_db
def test_a_scrape_costs_a_fixed_number_of_queries(client, admin_user, tmp_path):
    from apps.wargaming.models import WargameRun

    patch = pyyaml_upgrade_patch(tmp_path)
    client.force_login(admin_user)
    client.get("/metrics")  # session and user loaded once
    with CaptureQueriesContext(connection) as few:
        client.get("/metrics")
    WargameRun.objects.bulk_create(
        WargameRun(patch=patch, kind=kind, state="finished", verdict="patch_effective",
                   duration_s=float(i)) for i in range(200) for kind in ("package", "http"))
    with CaptureQueriesContext(connection) as many:
        client.get("/metrics")
    assert len(many) == len(few)
    domain = [q for q in many.captured_queries
              if "auth_" not in q["sql"] and "django_session" not in q["sql"]]
    # one query per family (a histogram's buckets by conditional aggregation)
    assert len(domain) <= 10, [q["sql"][:120] for q in domain]


@pytest.mark.django_db
def test_a_database_error_drops_the_domain_families_not_the_scrape(client, admin_user,
                                                                   monkeypatch):
    from apps.core import metrics

    def broken():
        raise RuntimeError("the database went away")
        yield  # pragma: no cover

    monkeypatch.setitem(metrics.DOMAIN_COLLECTORS, "broken", (broken, ()))
    client.force_login(admin_user)
    response = client.get("/metrics")
    assert response.status_code == 200
    assert "immune_apvs" in response.content.decode()  # the other collectors still answered
    # the failure is counted (and shown from the next scrape on: the counter came first)
    errors = _scrape(client)["immune_metrics_collect_errors_total"]
    assert errors[(("collector", "broken"),)] >= 1
