"""Sending, for real: email to a local SMTP server (aiosmtpd), webhooks to local HTTP
receivers, through the Celery task (run eagerly, with Celery's own autoretry)."""

from __future__ import annotations

import json
import logging

import pytest
from django.core.checks import run_checks

from apps.notifications.models import Channel, Delivery, Event, Notification, Subscription
from apps.notifications.tasks import deliver
from tests.factories import UserFactory
from tests.notifications.conftest import detect

TOKEN = "T0KEN-xoxb-4242-supersecret"


def _subscribe(username, **kwargs):
    return Subscription.objects.create(user=UserFactory(username=username),
                                       channels=["email"], **kwargs)


@pytest.mark.django_db
def test_email_is_delivered_to_a_real_smtp_server(pipeline, smtp_server,
                                                  django_capture_on_commit_callbacks):
    _subscribe("alice", project=pipeline.project, events=[Event.APV_NEW])
    detect(django_capture_on_commit_callbacks)

    high = pipeline.apv("urllib3", "high")
    (envelope,) = smtp_server.envelopes
    assert envelope.mail_from == "immune@example.org"
    assert envelope.rcpt_tos == ["alice@example.org"]
    message = envelope.content.decode()
    assert f"New high APV {high.code}" in message  # the subject
    assert "X-Immune-Delivery:" in message
    delivery = Delivery.objects.get()
    assert (delivery.channel, delivery.outcome, delivery.attempts) == ("email", "sent", 1)
    assert delivery.sent_at is not None


@pytest.mark.django_db
def test_webhook_gets_json_with_a_slack_text(pipeline, settings, receivers,
                                             django_capture_on_commit_callbacks):
    hook = receivers()
    settings.NOTIFY_WEBHOOK_URLS = [hook.url("/services/hook")]
    detect(django_capture_on_commit_callbacks)

    (request,) = hook.requests
    assert request["path"] == "/services/hook"
    assert request["headers"]["Content-Type"] == "application/json"
    body = json.loads(request["body"])
    high = pipeline.apv("urllib3", "high")
    assert body["event"] == "apv_new" and body["apv"] == high.code
    assert body["severity"] == "high" and body["project"] == "svc"
    assert body["text"].startswith(f"[immune] New high APV {high.code}")  # Slack's field
    delivery = Delivery.objects.get()
    assert body["delivery_id"] == delivery.pk
    assert request["headers"]["X-Immune-Delivery"] == str(delivery.pk)
    assert (delivery.outcome, delivery.attempts) == ("sent", 1)


@pytest.mark.django_db
def test_a_failing_receiver_that_recovers_gets_the_message_on_a_retry(
        pipeline, settings, receivers, django_capture_on_commit_callbacks):
    """The task raises DeliveryError on a 500; Celery's autoretry re-runs it (eagerly, so
    the backoff countdown is not waited here) and the third attempt is answered 200."""
    hook = receivers(statuses=[500, 503])
    settings.NOTIFY_WEBHOOK_URLS = [hook.url()]
    detect(django_capture_on_commit_callbacks)

    assert len(hook.requests) == 3
    assert len({r["body"] for r in hook.requests}) == 1  # the same message each time
    delivery = Delivery.objects.get()
    assert (delivery.outcome, delivery.attempts) == ("sent", 3)
    assert delivery.last_error == "webhook 127.0.0.1: HTTP 503"  # kept for the audit


@pytest.mark.django_db
def test_a_receiver_that_never_recovers_ends_failed_after_the_retries(
        pipeline, settings, receivers, django_capture_on_commit_callbacks):
    hook = receivers(statuses=[500] * 50)
    settings.NOTIFY_WEBHOOK_URLS = [hook.url()]
    detect(django_capture_on_commit_callbacks)

    delivery = Delivery.objects.get()
    assert (delivery.outcome, delivery.attempts) == ("failed", deliver.max_retries + 1)
    assert len(hook.requests) == deliver.max_retries + 1
    # A later pass does not send a failed delivery again.
    detect(django_capture_on_commit_callbacks)
    assert len(hook.requests) == deliver.max_retries + 1


def test_the_send_task_retries_with_exponential_backoff_and_a_rate_limit(settings):
    from apps.notifications.errors import DeliveryError

    assert deliver.autoretry_for == (DeliveryError,)
    assert deliver.retry_backoff == settings.NOTIFY_RETRY_BACKOFF_S
    assert deliver.retry_backoff_max == settings.NOTIFY_RETRY_BACKOFF_MAX_S
    assert deliver.max_retries == settings.NOTIFY_MAX_RETRIES
    assert deliver.rate_limit == settings.NOTIFY_TASK_RATE_LIMIT


@pytest.mark.django_db
def test_redirects_are_not_followed(pipeline, settings, receivers,
                                    django_capture_on_commit_callbacks):
    elsewhere = receivers()
    hook = receivers(statuses=[302] * 50, headers={"Location": elsewhere.url("/stolen")})
    settings.NOTIFY_WEBHOOK_URLS = [hook.url()]
    detect(django_capture_on_commit_callbacks)

    assert elsewhere.requests == []
    delivery = Delivery.objects.get()
    assert delivery.outcome == "failed"
    assert "redirects are not followed" in delivery.last_error


def test_only_http_and_https_webhooks_are_accepted(settings):
    settings.NOTIFY_WEBHOOK_URLS = ["https://hooks.example.org/x",
                                    f"ftp://files.example.org/{TOKEN}", "file:///etc/passwd"]
    errors = [e for e in run_checks() if e.id == "notifications.E001"]
    assert [e.msg for e in errors] == [
        "NOTIFY_WEBHOOK_URLS entry 2 is not an http:// or https:// URL",
        "NOTIFY_WEBHOOK_URLS entry 3 is not an http:// or https:// URL"]
    from apps.notifications.channels import webhook_targets

    assert list(webhook_targets().values()) == ["https://hooks.example.org/x"]


@pytest.mark.django_db
def test_webhook_secrets_never_reach_the_logs_or_the_database(
        pipeline, settings, receivers, caplog, django_capture_on_commit_callbacks):
    caplog.set_level(logging.DEBUG)  # urllib3/http.client debug lines would show the path
    hook = receivers(statuses=[500])
    secret_url = hook.url(f"/services/{TOKEN}").replace("http://",
                                                        "http://bot:pa55w0rd-hook@")
    settings.NOTIFY_WEBHOOK_URLS = [secret_url]
    # A second webhook that refuses connections: the error path of the socket layer too.
    settings.NOTIFY_WEBHOOK_URLS.append(f"http://127.0.0.1:9/{TOKEN}/closed")
    settings.NOTIFY_MAX_SENDS_PER_PASS = 10
    detect(django_capture_on_commit_callbacks)

    assert hook.requests[-1]["path"] == f"/services/{TOKEN}"  # it did use the URL
    assert hook.requests[-1]["headers"]["Authorization"].startswith("Basic ")
    # Every record, unredacted (as any handler would get it) and as the project renders it.
    formatter = logging.getLogger().handlers[0].formatter
    raw = [f"{record.msg} {record.args} {record.exc_info and record.exc_info[1]!r}"
           for record in caplog.records]
    logged = "\n".join(raw + [formatter.format(record) for record in caplog.records])
    assert "notification.sent" in logged and "notification.send_failed" in logged
    assert "'host': '127.0.0.1'" in logged
    stored = json.dumps(list(Delivery.objects.values())
                        + list(Notification.objects.values()), default=str)
    for secret in (TOKEN, "pa55w0rd-hook", "/services/"):
        assert secret not in logged, secret
        assert secret not in stored, secret
    assert Delivery.objects.filter(outcome="failed", channel=Channel.WEBHOOK).count() == 1


@pytest.mark.django_db
def test_sends_per_pass_are_capped_per_channel(pipeline, settings, receivers,
                                               django_capture_on_commit_callbacks):
    hooks = [receivers() for _ in range(3)]
    settings.NOTIFY_WEBHOOK_URLS = [h.url() for h in hooks]
    settings.NOTIFY_MAX_SENDS_PER_PASS = 2
    first = detect(django_capture_on_commit_callbacks)
    assert (first.deliveries, first.enqueued) == (3, 2)
    assert Delivery.objects.filter(outcome="pending", queued_at=None).count() == 1
    second = detect(django_capture_on_commit_callbacks)
    assert (second.deliveries, second.enqueued) == (0, 1)
    assert [len(h.requests) for h in hooks] == [1, 1, 1]
