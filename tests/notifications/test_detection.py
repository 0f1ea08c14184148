"""Each event kind is detected from the other apps' rows, once per subject however often
detection runs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.notifications.models import Event, Notification
from tests.notifications.conftest import SANDBOX_OK, age_sla, detect, set_sandbox


def _every_event(pipeline, reviewer, lead):
    """Make one subject of every event kind, through the services where one exists."""
    from apps.decisions.services import decision_record
    from apps.wargaming.models import WargameRun

    high = pipeline.apv("urllib3", "high")                 # apv_new
    warned, breached = type(high).objects.filter(
        project=pipeline.project, severity="medium").order_by("code")[:2]
    age_sla(warned, used=0.85)                             # sla_warning (85 % of 90 days)
    age_sla(breached, used=1.1)                            # sla_breached
    jinja = pipeline.apv("jinja2")
    decision_record(apv_code=jinja.code, reviewer=reviewer, decision="escalate",
                    justification="A lead should look at the sandbox escape.",
                    patch_revision=jinja.current_patch.revision)           # escalation
    pyyaml = pipeline.apv("pyyaml")
    decision_record(apv_code=pyyaml.code, reviewer=lead, decision="accept_risk",
                    justification="Only trusted YAML is loaded, for three days.",
                    patch_revision=pyyaml.current_patch.revision,
                    expires_at=timezone.now() + timedelta(days=3))          # risk_expiring
    # A finished run as wargaming records it (running a real exploit is wargaming's test).
    run = WargameRun.objects.create(
        patch=high.current_patch, patch_revision=high.current_patch.revision,
        kind="package", state="finished", verdict="patch_ineffective", confidence=0.9,
        reason="the exploit still succeeds on the patched version", exploit="urllib3_crlf",
        finished_at=timezone.now())                                         # patch_ineffective
    set_sandbox({**SANDBOX_OK, "available": False, "confined": False,
                 "detail": "bubblewrap missing"})                           # sandbox
    return {"high": high, "warned": warned, "breached": breached, "jinja": jinja,
            "pyyaml": pyyaml, "run": run}


@pytest.mark.django_db
def test_each_event_kind_is_detected_once(pipeline, reviewer, lead,
                                          django_capture_on_commit_callbacks):
    subjects = _every_event(pipeline, reviewer, lead)
    first = detect(django_capture_on_commit_callbacks)
    assert dict(first.created) == dict.fromkeys(Event.values, 1)

    second = detect(django_capture_on_commit_callbacks)
    assert dict(second.created) == {}
    by_event = {n.event: n for n in Notification.objects.all()}
    assert len(by_event) == Notification.objects.count() == len(Event.values)

    assert by_event[Event.APV_NEW].apv == subjects["high"]
    assert by_event[Event.APV_NEW].payload["severity"] == "high"
    assert by_event[Event.SLA_WARNING].apv == subjects["warned"]
    assert by_event[Event.SLA_BREACHED].apv == subjects["breached"]
    assert by_event[Event.ESCALATION].apv == subjects["jinja"]
    assert by_event[Event.ESCALATION].payload["reviewer"] == "rita"
    assert by_event[Event.RISK_EXPIRING].apv == subjects["pyyaml"]
    assert by_event[Event.PATCH_INEFFECTIVE].subject_key == f"wargame:{subjects['run'].pk}"
    assert by_event[Event.SANDBOX_UNAVAILABLE].payload["detail"].endswith(
        "bubblewrap missing")
    # The unknown- and medium-severity APVs raised by the same scan are not "new" events.
    assert not Notification.objects.filter(event=Event.APV_NEW).exclude(
        apv=subjects["high"]).exists()
    # Every message carries a Slack-compatible text and a link to the console.
    text = by_event[Event.APV_NEW].payload["text"]
    assert subjects["high"].code in text
    assert f"https://immune.example.org/admin/reviews/apv/{subjects['high'].pk}/" in text


@pytest.mark.django_db
def test_only_apvs_raised_since_the_last_pass_are_new(pipeline,
                                                      django_capture_on_commit_callbacks):
    from apps.reviews.models import APV

    high = pipeline.apv("urllib3", "high")
    # Raised two days ago: before this detector's first pass (and its overlap window).
    APV.objects.filter(pk=high.pk).update(created_at=timezone.now() - timedelta(days=2))
    assert dict(detect(django_capture_on_commit_callbacks).created) == {}


@pytest.mark.django_db
def test_a_renewed_risk_acceptance_is_announced_again(pipeline, lead,
                                                      django_capture_on_commit_callbacks):
    from apps.decisions.services import decision_record
    from apps.reviews.models import APV

    pyyaml = pipeline.apv("pyyaml")
    decision_record(apv_code=pyyaml.code, reviewer=lead, decision="accept_risk",
                    justification="Only trusted YAML is loaded, for now.",
                    patch_revision=pyyaml.current_patch.revision,
                    expires_at=timezone.now() + timedelta(days=2))
    assert detect(django_capture_on_commit_callbacks).created[Event.RISK_EXPIRING] == 1
    assert detect(django_capture_on_commit_callbacks).created == {}
    APV.objects.filter(pk=pyyaml.pk).update(
        risk_accepted_until=timezone.now() + timedelta(days=5))  # extended
    assert detect(django_capture_on_commit_callbacks).created == {Event.RISK_EXPIRING: 1}


@pytest.mark.django_db
def test_one_message_per_sandbox_outage(db, django_capture_on_commit_callbacks):
    down = {**SANDBOX_OK, "available": False, "detail": "no user namespaces"}
    set_sandbox(down)
    assert detect(django_capture_on_commit_callbacks).created == {
        Event.SANDBOX_UNAVAILABLE: 1}
    assert detect(django_capture_on_commit_callbacks).created == {}  # still the same outage
    set_sandbox({**SANDBOX_OK, "confined": False})  # degraded (unsandboxed) is not an outage
    assert detect(django_capture_on_commit_callbacks).created == {}
    set_sandbox(down)  # a new outage
    assert detect(django_capture_on_commit_callbacks).created == {
        Event.SANDBOX_UNAVAILABLE: 1}
    assert Notification.objects.filter(event=Event.SANDBOX_UNAVAILABLE).count() == 2


@pytest.mark.django_db
def test_a_kev_listed_apv_is_new_whatever_its_severity(tmp_path):
    # Advisories carry `kev_listed` since issue 14 (CISA KEV imports, docs/advisories.md):
    # an APV of a KEV-listed advisory is announced even with no severity
    # (docs/notifications.md, "KEV").
    from apps.advisories.evidence import kev_import
    from apps.advisories.services import advisories_import
    from apps.inventory.services import project_add, project_scan
    from apps.notifications.selectors import apvs_new, kev_field
    from tests.factories import ROOT, make_repo, pypa_root

    assert kev_field() == "kev_listed"
    advisories_import(sources=[str(pypa_root() / "pyyaml" / "PYSEC-2021-142.yaml")])
    repo = make_repo(tmp_path / "svc", {"requirements.txt": "PyYAML==5.3.1\n"})
    project_scan(project=project_add(name="svc", path=str(repo)))
    since = timezone.now() - timedelta(hours=1)
    assert list(apvs_new(since=since)) == []  # unknown severity, not KEV-listed
    kev_import(path=ROOT / "tests" / "advisories" / "evidence_data"
               / "known_exploited_vulnerabilities.json")
    assert [apv.advisory.osv_id for apv in apvs_new(since=since)] == ["PYSEC-2021-142"]
