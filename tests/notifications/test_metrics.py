"""``immune_notifications_total{channel,outcome}`` is counted from the Delivery table when
Prometheus scrapes."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from apps.notifications.models import Delivery, Subscription
from tests.factories import UserFactory
from tests.notifications.conftest import age_sla, detect


def _scrape(client) -> dict[str, dict[tuple, float]]:
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(client.get("/metrics").content.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = \
                sample.value
    return samples


@pytest.mark.django_db
def test_deliveries_are_counted_by_channel_and_outcome(
        client, admin_user, pipeline, settings, receivers, smtp_server,
        django_capture_on_commit_callbacks):
    ok, broken = receivers(), receivers(statuses=[500] * 50)
    settings.NOTIFY_WEBHOOK_URLS = [ok.url(), broken.url()]
    Subscription.objects.create(user=UserFactory(username="alice"), channels=["email"])
    age_sla(pipeline.apv("urllib3", "medium"), used=1.2)  # a second event: sla_breached
    settings.NOTIFY_MAX_SENDS_PER_PASS = 3  # leaves one webhook delivery pending
    client.force_login(admin_user)
    assert "immune_notifications_total" not in _scrape(client)

    detect(django_capture_on_commit_callbacks)

    samples = _scrape(client)
    webhook_sent = Delivery.objects.filter(channel="webhook", outcome="sent").count()
    webhook_failed = Delivery.objects.filter(channel="webhook", outcome="failed").count()
    # Two events × two webhooks, three sent per pass: which three is the table's order.
    assert webhook_sent + webhook_failed == 3 and webhook_sent >= 1 and webhook_failed >= 1
    assert samples["immune_notifications_total"] == {
        (("channel", "email"), ("outcome", "sent")): 2,
        (("channel", "webhook"), ("outcome", "sent")): webhook_sent,
        (("channel", "webhook"), ("outcome", "failed")): webhook_failed,
    }
    assert samples["immune_notifications_pending"] == {(("channel", "webhook"),): 1}
    assert len(smtp_server.envelopes) == 2
    assert len(ok.requests) == webhook_sent

    detect(django_capture_on_commit_callbacks)  # the next pass sends the one left
    after = _scrape(client)
    assert after.get("immune_notifications_pending", {}) == {}
    assert sum(after["immune_notifications_total"].values()) == 6
