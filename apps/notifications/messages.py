"""What a notification says: a title, the event's fields, and a Slack-compatible text.

Built once, when the event is detected, and stored on the Notification: every retry and
every target get the same message. Plain text only (no Slack markup beyond line breaks),
so the same text reads well in an email body.
"""

from __future__ import annotations

from django.conf import settings
from django.urls import NoReverseMatch, reverse

from apps.notifications.models import Event

PREFIX = "[immune]"


def _link(viewname: str, pk: int) -> str:
    if not settings.NOTIFY_BASE_URL:
        return ""
    try:
        return settings.NOTIFY_BASE_URL.rstrip("/") + reverse(viewname, args=[pk])
    except NoReverseMatch:
        return ""


def apv_fields(apv) -> dict:
    return {
        "apv": apv.code,
        "project": apv.project.name,
        "package": apv.dependency.name,
        "version": apv.dependency.version,
        "advisory": apv.advisory.osv_id,
        "aliases": list(apv.advisory.aliases or []),
        "summary": (apv.advisory.summary or "")[:300],
        "severity": apv.severity,
        "cvss_score": apv.cvss_score,
        "priority": apv.priority,
        "status": apv.status,
        "first_seen_at": apv.first_seen_at.isoformat(),
        "sla_due_at": apv.sla_due_at.isoformat(),
        "url": _link("admin:reviews_apv_change", apv.pk),
    }


def _apv_line(fields: dict) -> str:
    return (f"{fields['apv']}: {fields['package']} {fields['version']} in {fields['project']}"
            f" ({fields['advisory']}, {fields['severity']})")


def compose(event: str, fields: dict) -> tuple[str, dict]:
    """(title, payload) for ``event``; the payload carries ``event``, ``title``, ``text``
    and the fields."""
    title = f"{PREFIX} {_headline(event, fields)}"
    lines = [title]
    if fields.get("summary"):
        lines.append(fields["summary"])
    for label, key in _DETAILS.get(event, ()):
        if fields.get(key) not in (None, "", []):
            lines.append(f"{label}: {fields[key]}")
    if fields.get("url"):
        lines.append(fields["url"])
    payload = {"event": event, "title": title, "text": "\n".join(lines), **fields}
    return title[:300], payload


def _headline(event: str, f: dict) -> str:
    if event == Event.APV_NEW:
        kev = " (KEV-listed)" if f.get("kev") else ""
        return f"New {f['severity']} APV{kev} {_apv_line(f)}"
    if event == Event.SLA_WARNING:
        return f"SLA {f['sla_percent']} % used: {_apv_line(f)}"
    if event == Event.SLA_BREACHED:
        return f"SLA breached: {_apv_line(f)}"
    if event == Event.PATCH_INEFFECTIVE:
        return (f"Patch ineffective (still exploitable): {f['patch']} in {f['project']}"
                f" ({', '.join(f['apvs'])})")
    if event == Event.ESCALATION:
        return f"Escalated to the leads by {f['reviewer']}: {_apv_line(f)}"
    if event == Event.RISK_EXPIRING:
        return f"Risk acceptance expires {f['risk_accepted_until'][:10]}: {_apv_line(f)}"
    if event == Event.SANDBOX_UNAVAILABLE:
        return "Wargame sandbox unavailable: every wargame ends in error"
    return event


_DETAILS = {
    Event.APV_NEW: (("Priority", "priority"), ("CVSS", "cvss_score"),
                    ("SLA due", "sla_due_at")),
    Event.SLA_WARNING: (("SLA due", "sla_due_at"), ("Status", "status")),
    Event.SLA_BREACHED: (("SLA was due", "sla_due_at"), ("Status", "status")),
    Event.PATCH_INEFFECTIVE: (("Exploit", "exploit"), ("Reason", "reason"),
                              ("Confidence", "confidence")),
    Event.ESCALATION: (("Justification", "justification"),),
    Event.RISK_EXPIRING: (("Accepted until", "risk_accepted_until"),),
    Event.SANDBOX_UNAVAILABLE: (("Detail", "detail"), ("Since", "since")),
}
