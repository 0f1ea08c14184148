"""Two detection passes at once (as a late beat tick and the next one would) record and
send each message once: the unique (event, subject) constraint decides, on PostgreSQL."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from django.db import connection

from apps.notifications.models import Delivery, Event, Notification
from tests.notifications.conftest import age_sla, build_pipeline


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_detection_passes_send_each_message_once(tmp_path, settings,
                                                                receivers):
    from apps.notifications.services import notifications_detect

    pipeline = build_pipeline(tmp_path)
    for apv in pipeline.apvs.values():
        age_sla(apv, used=1.5)  # ten breached SLAs and one new high APV: eleven messages
    hook = receivers()
    settings.NOTIFY_WEBHOOK_URLS = [hook.url()]

    barrier = threading.Barrier(2)
    results, errors = [], []

    def pass_():
        try:
            barrier.wait(timeout=10)
            results.append(notifications_detect())
        except Exception as exc:  # noqa: BLE001 (reported by the assertion below)
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=pass_) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    created = sum((r.created for r in results), Counter())
    assert created == {Event.SLA_BREACHED: 10, Event.APV_NEW: 1}  # between the two passes
    assert Notification.objects.count() == 11
    assert Delivery.objects.count() == 11
    assert set(Delivery.objects.values_list("outcome", "attempts")) == {("sent", 1)}
    # The receiver got each message exactly once.
    sent = Counter(body["notification_id"] for body in hook.bodies)
    assert len(sent) == 11 and set(sent.values()) == {1}
