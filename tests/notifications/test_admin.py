"""Staff edit subscriptions in the admin; notifications and deliveries are read-only."""

from __future__ import annotations

import pytest

from apps.notifications.models import Subscription
from tests.factories import UserFactory


@pytest.mark.django_db
def test_staff_add_a_subscription_and_cannot_edit_the_audit_rows(admin_client, pipeline):
    alice = UserFactory(username="alice")
    response = admin_client.post("/admin/notifications/subscription/add/", {
        "user": alice.pk, "project": pipeline.project.pk,
        "events": ["apv_new", "escalation"], "channels": ["email"], "active": "on"})
    assert response.status_code == 302, response.content[:2000]
    sub = Subscription.objects.get()
    assert (sub.user, sub.project, sub.events, sub.channels) == (
        alice, pipeline.project, ["apv_new", "escalation"], ["email"])
    assert admin_client.get("/admin/notifications/subscription/").status_code == 200

    no_mail = UserFactory(username="nomail", email="")
    refused = admin_client.post("/admin/notifications/subscription/add/", {
        "user": no_mail.pk, "channels": ["email"], "active": "on"})
    assert refused.status_code == 200 and b"no email address" in refused.content

    for model in ("notification", "delivery"):
        assert admin_client.get(f"/admin/notifications/{model}/").status_code == 200
        assert admin_client.get(f"/admin/notifications/{model}/add/").status_code == 403
