"""What a reviewer's decision does to APVs and patches, written here because reviews owns
those rows (docs/architecture.md: each app writes only its own rows). Decisions sits above
and calls these inside its own transactions; they neither lock nor commit on their own.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.contrib.auth.models import Group
from django.utils import timezone

from apps.core.realtime import send_event_on_commit
from apps.core.roles import LEADS
from apps.reviews.models import APV, APVStatus, Patch, PatchState
from apps.reviews.services.apvs import apv_payload, stats_push_on_commit


def apv_claim(*, apv: APV, status_before: str, patch: Patch | None, status: str) -> bool:
    """Move ``apv`` from ``status_before`` to ``status`` if nobody moved it meanwhile (a
    conditional UPDATE: of concurrent decisions exactly one claims the APV)."""
    return APV.objects.filter(pk=apv.pk, status=status_before,
                              current_patch=patch).update(status=status) == 1


def apvs_lock_siblings(*, apv: APV, patch: Patch, status: str) -> list[APV]:
    """The other APVs the same patch revision covers that are at ``status``, locked: a
    verdict on the patch is a verdict for them."""
    return list(patch.apvs.select_for_update(of=("self",)).exclude(pk=apv.pk)
                .filter(status=status, current_patch=patch)
                .select_related("project", "dependency", "advisory"))


def apvs_decided(*, apvs: Iterable[APV], status: str, risk_accepted_until: datetime | None = None,
                 now: datetime | None = None) -> None:
    """Record where a decision left these APVs (and what the status brings with it: leads
    own an escalated APV, an accepted risk expires, changes requested restart the review
    clock), and tell live clients after commit."""
    apvs = list(apvs)
    update: dict = {"status": status, "updated_at": now or timezone.now()}
    if status == APVStatus.ESCALATED:
        update["assigned_group"] = Group.objects.filter(name=LEADS).first()
    if status == APVStatus.RISK_ACCEPTED:
        update["risk_accepted_until"] = risk_accepted_until
    if status == APVStatus.CHANGES_REQUESTED:
        update["pending_review_at"] = None
    APV.objects.filter(pk__in=[a.pk for a in apvs]).update(**update)
    for apv in apvs:
        apv.status = status
        send_event_on_commit("apvs", "apv.updated", apv_payload(apv))
    stats_push_on_commit()


def apvs_move_from(*, apv_ids: Iterable[int], patch: Patch | None, status: str,
                   to: str) -> list[APV]:
    """Move the APVs among ``apv_ids`` still at ``status`` on ``patch`` to ``to`` (a
    decision's outcome: merged → applied; failed → back where they were). APVs something
    else moved meanwhile are left alone. Returns those moved."""
    moved = list(APV.objects.select_for_update(of=("self",))
                 .filter(pk__in=list(apv_ids), status=status, current_patch=patch)
                 .select_related("project", "dependency", "advisory"))
    if moved:
        apvs_decided(apvs=moved, status=to)
    return moved


def patch_merged(*, patch: Patch, merge_commit: str) -> None:
    Patch.objects.filter(pk=patch.pk).update(state=PatchState.MERGED, merge_commit=merge_commit,
                                             updated_at=timezone.now())


def patch_closed(*, patch: Patch) -> None:
    Patch.objects.filter(pk=patch.pk).update(state=PatchState.CLOSED, updated_at=timezone.now())


def apvs_risk_acceptances_expire(*, now: datetime) -> list[APV]:
    """Accepted risks whose expiry passed go back to ``pending_review``."""
    expired = list(APV.objects.select_for_update(of=("self",)).filter(
        status=APVStatus.RISK_ACCEPTED, risk_accepted_until__lte=now,
    ).select_related("project", "dependency", "advisory"))
    for apv in expired:
        apv.status, apv.pending_review_at, apv.risk_accepted_until = (
            APVStatus.PENDING_REVIEW, now, None)
        apv.save(update_fields=["status", "pending_review_at", "risk_accepted_until",
                                "updated_at"])
        send_event_on_commit("apvs", "apv.updated", apv_payload(apv))
    return expired
