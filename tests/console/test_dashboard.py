"""The admin index dashboard: its numbers match the rows, its charts render and link."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.console.dashboard import OPEN_WORK_STATUSES, SEVERITY_ORDER, dashboard_data
from apps.console.templatetags.immune_dashboard import dashboard_context, humanize_seconds
from apps.decisions.models import Decision
from apps.decisions.services import decision_record
from apps.reviews.models import APV, APVStatus

JUSTIFICATION = "Checked by hand against the advisory."


def decide(apv: APV, reviewer, decision: str = "false_positive") -> None:
    apv.refresh_from_db()
    decision_record(apv_code=apv.code, reviewer=reviewer, decision=decision,
                    justification=JUSTIFICATION,
                    patch_revision=apv.current_patch.revision if apv.current_patch else None)


def pending_apvs():
    return APV.objects.filter(status=APVStatus.PENDING_REVIEW).order_by("code")


def test_pending_work_by_severity_matches_the_rows(demo, reviewer):
    decide(pending_apvs().first(), reviewer, "escalate")  # escalated is still pending work
    decide(pending_apvs().last(), reviewer, "false_positive")  # decided: not pending
    data = dashboard_data()
    queue = APV.objects.filter(status__in=["pending_review", "escalated"])
    assert APV.objects.filter(status="escalated").exists()
    assert list(data["pending_by_severity"]) == ["critical", "high", "medium", "low", "none",
                                                 "unknown"]
    assert data["pending_by_severity"] == {s: queue.filter(severity=s).count()
                                           for s in SEVERITY_ORDER}
    assert data["pending_total"] == queue.count() > 40


def test_past_sla_counts_open_work_only(demo):
    now = timezone.now()
    late = list(pending_apvs()[:5])
    APV.objects.filter(pk__in=[a.pk for a in late]).update(sla_due_at=now - timedelta(days=1))
    APV.objects.filter(pk=late[0].pk).update(status=APVStatus.REJECTED)  # closed: not counted
    APV.objects.filter(pk=late[1].pk).update(status=APVStatus.CHANGES_REQUESTED)  # still open
    data = dashboard_data(now=now)
    expected = APV.objects.filter(status__in=OPEN_WORK_STATUSES, sla_due_at__lt=now)
    assert data["past_sla"]["total"] == expected.count() == 4
    assert data["past_sla"]["by_severity"] == {s: expected.filter(severity=s).count()
                                               for s in SEVERITY_ORDER}


def test_decisions_per_day_are_zero_filled_and_today_is_last(demo, reviewer):
    assert dashboard_data()["decisions_total"] == 0
    apvs = list(pending_apvs()[:4])
    decide(apvs[0], reviewer, "reject")
    decide(apvs[1], reviewer, "false_positive")
    decide(apvs[2], reviewer, "false_positive")
    decide(apvs[3], reviewer, "false_positive")
    now = timezone.now()
    three_days_ago = now - timedelta(days=3)
    Decision.objects.filter(apv=apvs[2]).update(decided_at=three_days_ago)
    Decision.objects.filter(apv=apvs[3]).update(decided_at=now - timedelta(days=30))  # outside

    data = dashboard_data(now=now)
    days = data["decisions_per_day"]
    today = now.astimezone(UTC).date()
    assert [d["date"] for d in days] == [today - timedelta(days=i) for i in range(13, -1, -1)]
    rejected = Decision.objects.filter(decision="reject").count()  # one per APV of the patch
    assert days[-1]["by_type"]["reject"] == rejected >= 1
    assert days[-1]["by_type"]["false_positive"] == 1
    assert days[-1]["total"] == rejected + 1
    assert days[-4]["date"] == three_days_ago.astimezone(UTC).date()
    assert days[-4]["by_type"] == {"approve": 0, "reject": 0, "modify": 0, "escalate": 0,
                                   "accept_risk": 0, "false_positive": 1}
    assert all(d["total"] == 0 and d["median_seconds"] is None
               for i, d in enumerate(days) if i not in (len(days) - 1, len(days) - 4))
    assert data["decisions_total"] == rejected + 2

    # a window ending a week ago holds none of them (3 days ago is after it, 30 days before)
    week_ago = dashboard_data(now=now - timedelta(days=7), days=7)
    assert len(week_ago["decisions_per_day"]) == 7 and week_ago["decisions_total"] == 0


def test_days_are_utc_dates(demo, reviewer):
    apv = pending_apvs().first()
    decide(apv, reviewer)
    just_before_midnight = datetime(2030, 1, 10, 23, 59, 30, tzinfo=UTC)
    Decision.objects.filter(apv=apv).update(decided_at=just_before_midnight)
    days = dashboard_data(now=datetime(2030, 1, 11, 0, 0, 30, tzinfo=UTC), days=3)
    assert [(d["date"].isoformat(), d["total"]) for d in days["decisions_per_day"]] == [
        ("2030-01-09", 0), ("2030-01-10", 1), ("2030-01-11", 0)]


def test_median_time_to_decision(demo, reviewer):
    apvs = list(pending_apvs()[:4])
    for apv in apvs:
        decide(apv, reviewer)
    now = timezone.now()
    for apv, seconds in zip(apvs, [60, 240, 600, 7200], strict=True):
        Decision.objects.filter(apv=apv).update(review_seconds=seconds)
    Decision.objects.filter(apv=apvs[3]).update(decided_at=now - timedelta(days=1))
    Decision.objects.create(  # no review time (the APV never entered pending_review)
        apv=apvs[0], decision="false_positive", justification=JUSTIFICATION,
        reviewer=reviewer, decided_at=now, action_taken="none",
        status_before="pending_review", status_after="false_positive", review_seconds=None)

    data = dashboard_data(now=now)
    assert data["median_seconds"] == 420.0  # median of 60, 240, 600, 7200
    assert data["median_count"] == 4
    assert data["decisions_per_day"][-1]["median_seconds"] == 240.0  # 60, 240, 600
    assert data["decisions_per_day"][-2]["median_seconds"] == 7200.0
    assert data["decisions_per_day"][-1]["total"] == 4
    median = dashboard_context(now=now)["median"]
    assert median["median"] == "7 min" and len(median["points"]) == 2


def test_empty_sections_are_none_until_later_issues(db):
    data = dashboard_data()
    assert data["wargame_verdicts"] is None and data["model_accuracy"] is None
    assert data["pending_total"] == 0 and data["median_seconds"] is None
    assert len(data["decisions_per_day"]) == 14


@pytest.mark.parametrize(("seconds", "text"), [
    (None, "—"), (42.4, "42 s"), (60, "1 min"), (240, "4 min"), (3000, "50 min"), (8280, "2.3 h"),
    (3 * 86400, "3.0 d"),
])
def test_humanize_seconds(seconds, text):
    assert humanize_seconds(seconds) == text


def test_query_count_does_not_grow_with_decisions(demo, reviewer):
    with CaptureQueriesContext(connection) as none_yet:
        dashboard_context()
    for apv in list(pending_apvs()[:12]):
        decide(apv, reviewer)  # false positive: one decision per APV
    Decision.objects.filter(pk__in=Decision.objects.order_by("pk").values("pk")[:6]).update(
        decided_at=timezone.now() - timedelta(days=2))
    with CaptureQueriesContext(connection) as many:
        context = dashboard_context()
    assert context["data"]["decisions_total"] == Decision.objects.count() >= 12
    assert sum(d["total"] > 0 for d in context["data"]["decisions_per_day"]) == 2
    assert len(none_yet) == len(many) == 5  # + wargame verdicts, active model


def test_admin_index_shows_the_dashboard_and_the_app_list(admin_client, demo, reviewer):
    decide(pending_apvs().first(), reviewer, "escalate")
    APV.objects.filter(pk=pending_apvs().first().pk).update(
        sla_due_at=timezone.now() - timedelta(hours=2))
    response = admin_client.get("/admin/")
    assert response.status_code == 200
    page = response.content.decode()
    assert page.count("<svg") >= 4 and "immune/dashboard.css" in page
    for title in ("Pending work by severity", "Past SLA by severity",
                  "Decisions per day, by decision type", "Median time to decision per day"):
        assert f">{title}</title>" in page
    assert 'aria-labelledby="immune-pending-title immune-pending-desc"' in page
    data = dashboard_data()
    for severity in SEVERITY_ORDER:
        n = data["pending_by_severity"][severity]
        link = (f'href="/admin/reviews/apv/?severity__exact={severity}'
                '&amp;status__in=pending_review,escalated"')
        assert link in page
        assert f'aria-label="{n} {severity} APV' in page
    assert 'href="/admin/reviews/apv/?overdue=yes&amp;' in page
    assert "No wargame runs yet" in page and "No model trained yet" in page
    assert "Decisions per day" in page and "Escalate" in page  # legend
    assert "currentColor" in page and "<script" not in page.split("immune-dashboard")[1]
    assert 'class="app-reviews module' in page and "Recent actions" in page  # block.super


def test_dashboard_links_lead_to_lists_with_the_same_numbers(admin_client, demo):
    late = list(pending_apvs()[:3])
    APV.objects.filter(pk__in=[a.pk for a in late]).update(
        sla_due_at=timezone.now() - timedelta(days=1))
    APV.objects.filter(pk=late[0].pk).update(status=APVStatus.CHANGES_REQUESTED)
    context = dashboard_context()
    assert context["past_sla"]["total"] == 3
    page = admin_client.get(context["past_sla"]["href"]).content.decode()
    assert re.search(r"\b3 APVs\b", page), "the past-SLA list shows the figure's APVs"
    for row in context["pending"]["rows"]:
        if row["count"]:
            listed = admin_client.get(row["href"]).content.decode()
            name = "APV" if row["count"] == 1 else "APVs"
            assert re.search(rf"\b{row['count']} {name}\b", listed), row["severity"]


def test_unexpected_severities_count_as_unknown_and_no_row_text_is_printed(admin_client,
                                                                            demo):
    odd = pending_apvs().first()
    APV.objects.filter(pk=odd.pk).update(severity="<script>")
    data = dashboard_data()
    queue = APV.objects.filter(status__in=["pending_review", "escalated"])
    assert data["pending_by_severity"]["unknown"] == queue.filter(
        severity__in=["unknown", "<script>"]).count()
    assert "<script>" not in data["pending_by_severity"]
    page = admin_client.get("/admin/").content.decode()
    dashboard = page[page.index('id="immune-dashboard"'):page.index('id="content-main"')]
    assert "<script" not in dashboard and "&lt;script" not in dashboard


def test_who_sees_the_dashboard(client, demo, reviewer, django_user_model):
    client.force_login(reviewer)  # a reviewer: staff with the review permissions
    assert 'id="immune-dashboard"' in client.get("/admin/").content.decode()
    staffer = django_user_model.objects.create_user("staffer", password="x", is_staff=True)
    client.force_login(staffer)  # staff without access to APVs: the plain index
    page = client.get("/admin/")
    assert page.status_code == 200 and 'id="immune-dashboard"' not in page.content.decode()
