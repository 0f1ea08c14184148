"""The review console (Django admin): queue, detail, decisions, bulk actions, presence."""

from __future__ import annotations

import re

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from apps.decisions.models import Decision, DecisionAudit
from apps.reviews.models import APV
from immune.asgi import application
from tests.factories import git


def codes_on(page: str) -> list[str]:
    return re.findall(r'data-apv="(APV-\d{8}-\d{4})"', page)


def test_queue_defaults_to_pending_and_escalated_by_priority(client, reviewer, demo):
    client.force_login(reviewer)
    page = client.get("/admin/reviews/apv/").content.decode()
    shown = codes_on(page)
    assert len(shown) == APV.objects.filter(status="pending_review").count() == 62
    ordered = list(APV.objects.order_by("-priority", "sla_due_at", "code")
                   .values_list("code", flat=True))
    assert shown == ordered
    upgrade = next(a for a in APV.objects.select_related("current_patch").filter(code__in=shown)
                   if a.current_patch.target_version)
    assert f"→ <strong>{upgrade.current_patch.target_version}</strong>" in page
    assert "sev-badge" in page and "Review queue" in page
    resolved = client.get("/admin/reviews/apv/", {"status": "resolved"}).content.decode()
    assert codes_on(resolved) == []


def test_queue_filters_and_search(client, reviewer, demo):
    client.force_login(reviewer)
    by_cve = codes_on(client.get("/admin/reviews/apv/", {"q": "CVE-2020-14343"}).content.decode())
    assert by_cve == list(APV.objects.filter(advisory__osv_id="PYSEC-2021-142")
                          .values_list("code", flat=True))
    by_ghsa = client.get("/admin/reviews/apv/", {"q": "GHSA-8q59-q68h-6hv4"}).content.decode()
    assert codes_on(by_ghsa) == by_cve
    by_package = codes_on(client.get("/admin/reviews/apv/", {"q": "urllib3"}).content.decode())
    assert len(by_package) == APV.objects.filter(dependency__normalised_name="urllib3").count()
    high = codes_on(client.get("/admin/reviews/apv/", {"severity__exact": "high"})
                    .content.decode())
    assert set(high) == set(APV.objects.filter(severity="high").values_list("code", flat=True))
    assert codes_on(client.get("/admin/reviews/apv/", {"overdue": "yes"}).content.decode()) == []
    mine = codes_on(client.get("/admin/reviews/apv/", {"assigned": "me"}).content.decode())
    assert mine == []
    upgrades = client.get("/admin/reviews/apv/", {"strategy": "dependency_upgrade"})
    assert len(codes_on(upgrades.content.decode())) == 55  # the 7 demo-service APVs: code
    code = client.get("/admin/reviews/apv/", {"strategy": "code_patch"}).content.decode()
    assert len(codes_on(code)) == 7


def test_queue_query_count_does_not_grow_with_rows(client, reviewer, demo):
    client.force_login(reviewer)

    def queries(params):
        with CaptureQueriesContext(connection) as ctx:
            response = client.get("/admin/reviews/apv/", params)
        assert response.status_code == 200
        return len(ctx.captured_queries), len(codes_on(response.content.decode()))

    few, n_few = queries({"q": "pyyaml"})
    many, n_many = queries({})
    assert n_few == 1 and n_many == 62
    assert few == many


def test_detail_shows_what_a_reviewer_needs(client, reviewer, demo):
    client.force_login(reviewer)
    apv = APV.objects.select_related("current_patch").get(advisory__osv_id="PYSEC-2021-142")
    page = client.get(f"/admin/reviews/apv/{apv.pk}/change/").content.decode()
    assert "PYSEC-2021-142" in page and "CVE-2020-14343" in page
    assert "requirements.txt:2" in page  # where the dependency is declared
    assert 'class="immune-diff"' in page  # Pygments-highlighted diff
    assert "PyYAML==5.4" in page and apv.current_patch.branch in page
    assert 'href="https://' in page  # references are links
    assert "decide-approve" in page and "decide-accept_risk" not in page  # leads only
    assert "Not wargamed yet." in page and "No decisions yet" in page


def test_lead_sees_accept_risk(client, lead, demo):
    client.force_login(lead)
    apv = APV.objects.first()
    page = client.get(f"/admin/reviews/apv/{apv.pk}/change/").content.decode()
    assert "decide-accept_risk" in page


def approve_form(client, apv, justification="Changelog checked, tests pass."):
    form = client.get(f"/admin/reviews/apv/{apv.pk}/decide/approve/").context["form"]
    return {"justification": justification, "confidence": "0.9",
            "patch_revision": form.initial["patch_revision"],
            "idempotency_key": form.initial["idempotency_key"]}


def test_approve_from_the_console_merges_and_reports(client, reviewer, demo):
    client.force_login(reviewer)
    apv = APV.objects.select_related("project", "current_patch").get(
        advisory__osv_id="PYSEC-2021-142")
    data = approve_form(client, apv)
    response = client.post(f"/admin/reviews/apv/{apv.pk}/decide/approve/", data, follow=True)
    page = response.content.decode()
    assert "Approve recorded (merged); now applied." in page
    assert "PyYAML==5.4" in git(apv.project.path, "show", "main:requirements.txt")
    audit = DecisionAudit.objects.get()
    assert audit.via == "admin" and audit.reviewer_username == "rita"
    # a double submit of the same form is the same decision, not a second one
    client.post(f"/admin/reviews/apv/{apv.pk}/decide/approve/", data, follow=True)
    assert Decision.objects.count() == 1


def test_second_reviewer_is_told_it_was_decided(client, reviewer, lead, demo):
    apv = APV.objects.get(advisory__osv_id="PYSEC-2021-142")
    client.force_login(reviewer)
    stale_form = approve_form(client, apv)
    client.force_login(lead)
    client.post(f"/admin/reviews/apv/{apv.pk}/decide/reject/",
                {**approve_form(client, apv), "justification": "Not this way, sorry."})
    client.force_login(reviewer)
    page = client.post(f"/admin/reviews/apv/{apv.pk}/decide/approve/", stale_form,
                       follow=True).content.decode()
    assert "is rejected, not awaiting a decision" in page
    assert Decision.objects.count() == 1


def test_short_justification_is_refused_by_the_form(client, reviewer, demo):
    client.force_login(reviewer)
    apv = APV.objects.first()
    response = client.post(f"/admin/reviews/apv/{apv.pk}/decide/approve/",
                           approve_form(client, apv, justification="ok"))
    assert response.status_code == 200 and "at least 10 characters" in response.content.decode()
    assert Decision.objects.count() == 0


def test_bulk_escalate_confirms_then_records_one_decision_each(client, reviewer, demo):
    client.force_login(reviewer)
    picked = list(APV.objects.filter(dependency__normalised_name="requests"))
    selection = {"action": "bulk_escalate", "_selected_action": [a.pk for a in picked],
                 "index": 0}
    confirm = client.post("/admin/reviews/apv/", selection)
    assert "each APV below gets its own decision" in confirm.content.decode()
    assert Decision.objects.count() == 0
    done = client.post("/admin/reviews/apv/", {**selection, "confirm": "yes",
                                                "justification": "Needs a lead's call."},
                       follow=True)
    assert "APV(s) decided, one audited decision each" in done.content.decode()
    # requests APVs share one patch: the first escalation covers the others too, and the
    # rest are reported as already escalated; every APV ends escalated, each audited once.
    assert set(APV.objects.filter(pk__in=[a.pk for a in picked])
               .values_list("status", flat=True)) == {"escalated"}
    assert DecisionAudit.objects.count() == Decision.objects.count() >= 1


def test_decisions_are_read_only_in_the_admin(admin_client, reviewer, demo):
    from apps.decisions.services import decision_record

    apv = APV.objects.select_related("current_patch").first()
    decision = decision_record(apv_code=apv.code, reviewer=reviewer, decision="escalate",
                               justification="Needs a lead's call.",
                               patch_revision=apv.current_patch.revision).decision
    assert admin_client.get(f"/admin/decisions/decision/{decision.pk}/change/").status_code \
        == 200
    assert admin_client.post(f"/admin/decisions/decision/{decision.pk}/delete/").status_code \
        == 403
    assert admin_client.get("/admin/decisions/decisionaudit/add/").status_code == 403
    page = admin_client.post(f"/admin/decisions/decision/{decision.pk}/change/",
                             {"justification": "changed afterwards"})
    assert page.status_code == 403
    assert Decision.objects.get().justification == "Needs a lead's call."


@pytest.mark.django_db(transaction=True)
def test_presence_shows_who_else_has_the_apv_open(reviewer, lead, demo):
    code = APV.objects.first().code
    cookies = []
    for user in (reviewer, lead):
        browser = Client()  # one session each: a second login on one client ends the first
        browser.force_login(user)
        cookies.append(f"sessionid={browser.cookies['sessionid'].value}".encode())

    async def scenario():
        rita = WebsocketCommunicator(application, "/ws/reviews/", headers=[
            (b"origin", b"http://127.0.0.1"), (b"cookie", cookies[0])])
        leo = WebsocketCommunicator(application, "/ws/reviews/", headers=[
            (b"origin", b"http://127.0.0.1"), (b"cookie", cookies[1])])
        assert (await rita.connect())[0] and (await leo.connect())[0]
        await rita.receive_json_from()
        await leo.receive_json_from()
        await rita.send_json_to({"type": "presence", "apv": code})
        alone = await rita.receive_json_from()
        await leo.send_json_to({"type": "presence", "apv": code})
        both = await rita.receive_json_from()
        await leo.disconnect()
        after = await rita.receive_json_from()
        await rita.send_json_to({"type": "presence", "apv": "../etc"})
        bad = await rita.receive_json_from()
        await rita.disconnect()
        return alone, both, after, bad

    alone, both, after, bad = async_to_sync(scenario)()
    assert alone == {"type": "presence", "data": {"apv": code, "viewers": ["rita"]}}
    assert both["data"]["viewers"] == ["leo", "rita"]
    assert after["data"]["viewers"] == ["rita"]
    assert bad["type"] == "error" and bad["code"] == "bad_apv"
