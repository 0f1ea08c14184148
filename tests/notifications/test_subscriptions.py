"""Who gets what: subscriptions by project and event for email, the operator's webhooks
for every event unless NOTIFY_WEBHOOK_EVENTS narrows them."""

from __future__ import annotations

import pytest

from apps.notifications.models import Channel, Delivery, Event, Subscription
from apps.reviews.models import APV
from tests.factories import UserFactory
from tests.notifications.conftest import age_sla, build_pipeline, detect


def _subscribe(username, *, project=None, events=(), channels=("email",), active=True):
    user = UserFactory(username=username)
    return Subscription.objects.create(user=user, project=project, events=list(events),
                                       channels=list(channels), active=active)


def _emails(event: str) -> set[str]:
    return set(Delivery.objects.filter(notification__event=event, channel=Channel.EMAIL)
               .values_list("target", flat=True))


@pytest.mark.django_db
def test_subscriptions_filter_by_project_and_event(tmp_path, django_capture_on_commit_callbacks):
    svc = build_pipeline(tmp_path, "svc")
    other = build_pipeline(tmp_path, "other")  # the same APVs in a second project
    _subscribe("alice", project=svc.project, events=[Event.APV_NEW])
    _subscribe("bob", events=[Event.SLA_BREACHED])              # every project
    _subscribe("carol", project=other.project)                   # every event of "other"
    _subscribe("dave", project=svc.project, active=False)        # switched off
    _subscribe("erin", project=svc.project, channels=["webhook"])  # no email wanted
    age_sla(svc.apv("urllib3", "medium"), used=1.2)              # breached in svc only

    detect(django_capture_on_commit_callbacks)

    # The scan raised one high APV per project: alice hears of svc's, carol of other's.
    new = Delivery.objects.filter(notification__event=Event.APV_NEW, channel=Channel.EMAIL)
    assert {(d.target, d.notification.project.name) for d in new} == {
        ("alice@example.org", "svc"), ("carol@example.org", "other")}
    assert _emails(Event.SLA_BREACHED) == {"bob@example.org"}
    assert not Delivery.objects.filter(target__startswith="dave").exists()
    assert not Delivery.objects.filter(target__startswith="erin").exists()
    # The locmem test backend took nothing: sends go through the task, recorded per row.
    assert set(Delivery.objects.values_list("outcome", flat=True)) == {"sent"}


@pytest.mark.django_db
def test_two_subscriptions_of_one_user_send_one_email(pipeline,
                                                      django_capture_on_commit_callbacks):
    _subscribe("alice", project=pipeline.project)
    Subscription.objects.create(user=UserFactory(username="alice"), project=None,
                                events=[Event.APV_NEW], channels=["email"])
    detect(django_capture_on_commit_callbacks)
    assert Delivery.objects.filter(notification__event=Event.APV_NEW).count() == 1


@pytest.mark.django_db
def test_webhooks_get_every_event_unless_narrowed(pipeline, settings, receivers,
                                                  django_capture_on_commit_callbacks):
    hook = receivers()
    settings.NOTIFY_WEBHOOK_URLS = [hook.url()]
    settings.NOTIFY_WEBHOOK_EVENTS = ["none"]  # only what a subscription routes to them
    _subscribe("erin", events=[Event.SLA_BREACHED], channels=["webhook"])
    age_sla(pipeline.apv("urllib3", "medium"), used=1.2)

    result = detect(django_capture_on_commit_callbacks)
    assert set(result.created) == {Event.APV_NEW, Event.SLA_BREACHED}
    webhooks = Delivery.objects.filter(channel=Channel.WEBHOOK)
    assert [d.notification.event for d in webhooks] == [Event.SLA_BREACHED]
    assert [b["event"] for b in hook.bodies] == [Event.SLA_BREACHED]

    settings.NOTIFY_WEBHOOK_EVENTS = ["all"]  # the default: every event, subscribed or not
    second = APV.objects.filter(project=pipeline.project, severity="medium").order_by(
        "-code").first()
    age_sla(second, used=1.5)
    assert detect(django_capture_on_commit_callbacks).created == {Event.SLA_BREACHED: 1}
    assert Delivery.objects.filter(channel=Channel.WEBHOOK).count() == 2
    assert [b["apv"] for b in hook.bodies][-1] == second.code
