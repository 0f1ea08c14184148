"""Audit records of decisions, written in the same transaction as the decision."""

from __future__ import annotations

from dataclasses import dataclass

from apps.decisions.models import Decision, DecisionAudit
from apps.ml.selectors import prediction_snapshot
from apps.reviews.models import APV

#: Diffs larger than this are cut in the snapshot (the full diff stays on the patch row).
SNAPSHOT_DIFF_LIMIT = 100_000


@dataclass(frozen=True)
class DecisionContext:
    """Where a decision came from: the request's address and user agent, and the channel."""

    client_ip: str | None = None
    user_agent: str = ""
    via: str = "api"


def apv_snapshot(apv: APV) -> dict:
    """What the reviewer was shown when deciding (spec: Decision audit)."""
    advisory, patch = apv.advisory, apv.current_patch
    return {
        "apv": {"code": apv.code, "status": apv.status, "priority": apv.priority,
                "severity": apv.severity, "cvss_score": apv.cvss_score,
                "package": apv.dependency.name, "version": apv.dependency.version,
                "manifest": apv.dependency.manifest_path, "line": apv.dependency.line,
                "sla_due_at": apv.sla_due_at.isoformat()},
        "advisory": {"id": advisory.osv_id, "aliases": advisory.aliases,
                     "summary": advisory.summary, "severity": advisory.severity,
                     "cvss_score": advisory.cvss_score, "cvss_vector": advisory.cvss_vector,
                     "cwe_ids": advisory.cwe_ids, "modified": advisory.modified.isoformat()
                     if advisory.modified else None},
        "patch": None if patch is None else {
            "id": patch.pk, "revision": patch.revision, "strategy": patch.strategy,
            "target_version": patch.target_version, "branch": patch.branch,
            "commit": patch.commit_sha, "risk_level": patch.risk_level, "notes": patch.notes,
            "diff": patch.diff[:SNAPSHOT_DIFF_LIMIT],
            "diff_truncated": len(patch.diff) > SNAPSHOT_DIFF_LIMIT,
        },
        "wargame_verdict": _wargame(apv),
        "prediction": prediction_snapshot(patch),
    }


def decision_audit_record(*, decision: Decision, snapshot: dict,
                          context: DecisionContext) -> DecisionAudit:
    return DecisionAudit.objects.create(
        decision=decision, reviewer_username=decision.reviewer.get_username(),
        recorded_at=decision.decided_at, client_ip=context.client_ip,
        user_agent=context.user_agent[:1000], via=context.via, snapshot=snapshot,
    )


def _wargame(apv) -> dict | None:
    """The current patch's run as it concerns this APV: its verdict only when the run's
    exploit covers the APV's advisory (verdict scope, docs/wargaming.md)."""
    from apps.wargaming.selectors import apv_wargame

    return apv_wargame(apv)


def decision_payload(record: Decision) -> dict:
    """The ``decision.made`` / ``decision.applied`` event."""
    return {"apv": record.apv.code, "decision": record.decision,
            "action_taken": record.action_taken or record.outcome,
            "outcome": record.outcome, "error": record.action_error,
            "status": record.status_after, "reviewer": record.reviewer.get_username(),
            "patch_revision": record.patch_revision, "decision_id": record.pk,
            "also_applied_to": [a.code for a in record.also_applied_to.all()]}
