"""Beat's tasks: hourly feed sync and daily rescans, both idempotent."""

import json

import pytest

from apps.advisories.models import Advisory
from apps.advisories.tasks import advisories_sync
from apps.inventory.services import project_add
from apps.inventory.tasks import rescan_all, scan_project
from apps.reviews.models import APV
from immune.celery import app
from tests.factories import TEST_ADVISORIES, make_repo


def test_beat_schedules_feed_sync_hourly_and_rescans_daily():
    schedule = {e["task"]: e["schedule"].total_seconds()
                for e in app.conf.beat_schedule.values()}
    assert schedule == {"advisories.sync": 3600, "inventory.rescan_all": 86400,
                        "decisions.expire_risk_acceptances": 900, "ml.retrain": 7 * 86400,
                        "wargaming.reap": 60, "notifications.detect": 60,
                        "decisions.requeue_stale": 60}


@pytest.mark.django_db
def test_feed_sync_imports_configured_sources_and_is_idempotent(settings):
    settings.ADVISORY_SOURCES = [str(TEST_ADVISORIES / "pysec.json"),
                                 str(TEST_ADVISORIES / "ghsa-cvss3.json")]
    first = advisories_sync.delay().get()
    assert [r["created"] for r in first.values()] == [1, 1]
    second = advisories_sync.delay().get()
    assert [r["unchanged"] for r in second.values()] == [1, 1]
    assert Advisory.objects.count() == 2


@pytest.mark.django_db
def test_rescan_all_scans_every_project_twice_without_duplicates(tmp_path, settings):
    folder = tmp_path / "feed"
    folder.mkdir()
    (folder / "a.json").write_text(json.dumps({
        "id": "PYSEC-0000-1", "modified": "2024-01-01T00:00:00Z",
        "affected": [{"package": {"ecosystem": "PyPI", "name": "pyyaml"},
                      "ranges": [{"type": "ECOSYSTEM",
                                  "events": [{"introduced": "0"}, {"fixed": "5.4"}]}]}],
    }))
    settings.ADVISORY_SOURCES = [str(folder)]
    advisories_sync.delay().get()
    for i in range(2):
        project_add(name=f"p{i}", path=str(make_repo(tmp_path / f"r{i}",
                                                     {"requirements.txt": "pyyaml==5.3\n"})))
    assert rescan_all.delay().get() == 2
    assert rescan_all.delay().get() == 2
    assert APV.objects.count() == 2
    assert scan_project.delay(999_999).get() == {"skipped": "project 999999 no longer exists"}
