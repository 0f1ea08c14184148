"""Verdict scope (issue 11): a PoC's verdict covers the advisories it names. One upgrade patch
fixes two PyYAML advisories; the library's PoC names one of them. The other APV shows "no
exploit" in the API, the admin and the decision audit, and is not counted as proven by the
ML labels or the A/B comparison."""

from __future__ import annotations

import json
import re

import pytest
from rest_framework.test import APIClient

from apps.reviews.models import APV
from apps.wargaming.models import WargameRun
from apps.wargaming.selectors import run_covers, run_for_apv
from apps.wargaming.services import wargame_execute, wargame_start

pytestmark = pytest.mark.django_db

COVERED = "PYSEC-2021-142"  # named by apps/wargaming/exploits/packages/pyyaml_pysec_2021_142.py
OTHER = "TEST-PYYAML-0002"  # a second advisory of the same range, which no PoC names

OTHER_OSV = {
    "schema_version": "1.6.0", "id": OTHER, "modified": "2024-01-02T00:00:00Z",
    "published": "2020-01-02T00:00:00Z", "aliases": ["CVE-2099-0002"],
    "summary": "PyYAML uses unbounded memory on crafted aliases (test advisory)",
    "details": "A second advisory of the same package and range, for the verdict-scope test.",
    "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"}],
    "affected": [{"package": {"ecosystem": "PyPI", "name": "pyyaml"},
                  "ranges": [{"type": "ECOSYSTEM",
                              "events": [{"introduced": "0"}, {"fixed": "5.4"}]}]}],
    "database_specific": {"cwe_ids": ["CWE-400"]},
}


def _project(tmp_path, name: str):
    from apps.inventory.services import project_add, project_scan
    from apps.reviews.services.patches import patches_propose
    from tests.factories import make_repo

    repo = make_repo(tmp_path / name, {"requirements.txt": "PyYAML==5.3.1\n"})
    project = project_scan(project=project_add(name=name, path=str(repo))).project
    return patches_propose(project=project).proposed[0]


@pytest.fixture
def wargamed(tmp_path):
    """(patch, run, covered APV, other APV) after a real wargame of the shared patch."""
    from apps.advisories.services import advisories_import
    from tests.factories import DEMO_ADVISORIES

    feed = tmp_path / "feed"
    feed.mkdir()
    (feed / f"{OTHER}.json").write_text(json.dumps(OTHER_OSV))
    advisories_import(sources=[str(DEMO_ADVISORIES / "pyyaml"), str(feed)])
    patch = _project(tmp_path, "svc")
    assert patch.apvs.count() == 2 and patch.target_version == "5.4"
    run, _ = wargame_start(patch=patch, trigger="test")
    run = wargame_execute(run=run)
    assert run.verdict == "patch_effective", run.reason
    covered = APV.objects.get(advisory__osv_id=COVERED)
    other = APV.objects.get(advisory__osv_id=OTHER)
    return patch, run, covered, other


def test_the_run_covers_only_the_advisory_its_exploit_names(wargamed, reviewer):
    patch, run, covered, other = wargamed
    assert run.advisories == [COVERED]
    assert run_covers(run, covered) and not run_covers(run, other)
    assert run_for_apv(covered) == run and run_for_apv(other) is None
    assert covered.status == other.status == "pending_review"  # both reviewed, either way
    api = APIClient()
    api.force_authenticate(reviewer)
    detail = api.get(f"/api/v1/wargaming/runs/{run.pk}/").json()
    assert detail["advisories"] == [COVERED] and detail["attempts"] == 1


def test_api_shows_no_exploit_for_the_other_apv(wargamed, reviewer):
    _, run, covered, other = wargamed
    api = APIClient()
    api.force_authenticate(reviewer)
    shown = api.get(f"/api/v1/apvs/{covered.code}/").json()["wargame"]
    assert shown["run"] == run.pk and shown["exploit_covers"] is True
    assert shown["verdict"] == "patch_effective" and shown["confidence"] >= 0.85
    missing = api.get(f"/api/v1/apvs/{other.code}/").json()["wargame"]
    assert missing["run"] == run.pk and missing["exploit_covers"] is False
    assert missing["verdict"] is None and missing["confidence"] is None
    assert missing["reason"].startswith(f"no exploit for {OTHER}")
    assert missing["advisories"] == [COVERED]
    schema = api.get("/api/schema/", {"format": "json"}).json()
    assert "exploit_covers" in json.dumps(schema["components"]["schemas"]["APVWargame"])


def test_admin_queue_and_detail_show_no_exploit_for_the_other_apv(wargamed, client, reviewer):
    _, _, covered, other = wargamed
    client.force_login(reviewer)
    page = client.get("/admin/reviews/apv/").content.decode()
    rows = {code: row for row in re.findall(r"<tr>.*?</tr>", page, flags=re.S)
            for code in (covered.code, other.code) if code in row}
    assert "patch effective" in rows[covered.code] and "no exploit" not in rows[covered.code]
    assert "no exploit" in rows[other.code] and "patch effective" not in rows[other.code]

    only_missing = client.get("/admin/reviews/apv/", {"verdict": "no_exploit"})
    assert other.code in only_missing.content.decode()
    assert covered.code not in only_missing.content.decode()
    only_proven = client.get("/admin/reviews/apv/", {"verdict": "patch_effective"})
    assert covered.code in only_proven.content.decode()
    assert other.code not in only_proven.content.decode()

    shown = client.get(f"/admin/reviews/apv/{other.pk}/change/").content.decode()
    assert "No exploit for this advisory" in shown and "Patch effective" not in shown
    proven = client.get(f"/admin/reviews/apv/{covered.pk}/change/").content.decode()
    assert "Patch effective" in proven and "No exploit for this advisory" not in proven

    runs = client.get("/admin/wargaming/wargamerun/").content.decode()
    assert COVERED in runs and OTHER not in runs


def test_the_decision_audit_snapshot_keeps_the_scope(wargamed):
    from apps.decisions.events import apv_snapshot

    _, _, covered, other = wargamed
    assert apv_snapshot(covered)["wargame_verdict"]["verdict"] == "patch_effective"
    seen = apv_snapshot(other)["wargame_verdict"]
    assert seen["verdict"] is None and seen["exploit_covers"] is False


def _legacy_run(tmp_path):
    """A label verdict that covers no advisory: what a run from before the scope looks like
    (its exploit no longer on disk), stored through the service with a hand-made result."""
    from apps.reviews.models import APVStatus
    from apps.reviews.services.apvs import apvs_move_for_patch
    from apps.wargaming import runner
    from apps.wargaming.services import _claim, _store

    patch = _project(tmp_path, "legacy")
    run, _ = wargame_start(patch=patch, trigger="test")
    assert _claim(run)
    apvs_move_for_patch(patch=patch, status=APVStatus.VALIDATING,
                        before=(APVStatus.PATCH_PROPOSED, APVStatus.PENDING_REVIEW))
    run.refresh_from_db()
    result = runner.RunResult("patch_effective", 0.95, "exploited before, blocked after", [],
                              network_isolated=True, duration_s=0.1, sandbox={})
    run = _store(run, result, free_apvs=True)
    assert run.verdict == "patch_effective" and run.advisories == []
    return run


def test_ml_labels_count_covered_advisories_only(wargamed, tmp_path):
    from apps.ml.features import patch_features
    from apps.ml.services import label_runs, labels_count, predictions_settle, training_set

    patch, run, _, _ = wargamed
    legacy = _legacy_run(tmp_path)
    assert list(label_runs()) == [run]  # the run that covers nothing teaches nothing
    assert labels_count() == {"effective": 1, "not_effective": 0}
    assert predictions_settle(run=legacy) == 0

    data = training_set(with_corpus=False)
    features, labels, newest = data.features, data.labels, data.newest_run
    assert labels == [1] and newest == run.pk
    # The advisory features describe the covered advisory (no CVSS, CWE-20), not the
    # other one (CVSS 7.5, CWE-400), though the patch claims both.
    assert features[0]["cvss_score"] == 0.0 and features[0]["cwe_family"] == "validation"
    assert features[0]["severity"] != "high" and patch.apvs.count() == 2
    everything = patch_features(patch, scope=[COVERED, OTHER])
    assert everything["cvss_score"] == 7.5 and everything["cwe_family"] == "resource"
    # Predicting, the scope is what the library's exploit would cover: the same features.
    assert patch_features(patch) == features[0]


def test_ab_results_compare_on_covered_apvs_only(wargamed, tmp_path):
    from apps.ab_testing.apis import ResultOutput
    from apps.ab_testing.selectors import accuracy_report
    from apps.ab_testing.services import ab_result_record, experiment_enable
    from apps.ml.models import ModelVersion, Prediction

    _, run, _, _ = wargamed
    legacy = _legacy_run(tmp_path)
    experiment_enable(rate=1.0, via="test")
    # Training a real model needs ≥ 5 wargamed labels per class; this test is about the
    # pairing, so the model version is only the row the pairs point at.
    model = ModelVersion.objects.create(
        version=1, algorithm="test", training_size=0, cv_folds=0, cv_accuracy=0,
        cv_precision=0, cv_recall=0, cv_f1=0, cv_brier=0, artifact=b"",
        artifact_sha256="0" * 64, trigger="test")
    results = {}
    for shadow in (run, legacy):
        Prediction.objects.create(
            patch=shadow.patch, patch_revision=shadow.patch_revision, model_version=model,
            probability=0.9, confidence=0.9, predicted_effective=True, threshold=0.8,
            route="ml", reason="test", features={}, feature_hash="x", trigger="test",
            wargame_run=shadow, ab_sampled=True)
        results[shadow.pk] = ab_result_record(run=shadow)
    proven, unproven = results[run.pk], results[legacy.pk]
    assert proven.actual_effective is True and proven.correct is True
    assert unproven.actual_effective is None and unproven.correct is None
    assert unproven.wargame_verdict == "patch_effective"  # kept, but not counted
    report = accuracy_report()
    assert report["sample_size"] == 1 and report["not_counted"] == 1
    assert ResultOutput(proven).data["covered_advisories"] == [COVERED]
    assert ResultOutput(unproven).data["covered_advisories"] == []
    assert WargameRun.objects.get(pk=legacy.pk).advisories == []
