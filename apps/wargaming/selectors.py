"""Reads of wargaming: which run speaks for an APV (verdict scope, docs/wargaming.md)."""

from __future__ import annotations

from django.db.models import F, OuterRef, QuerySet, TextField, Value
from django.db.models.functions import Cast, Concat

from apps.reviews.models import Patch
from apps.wargaming.models import RunState, WargameRun


def run_covers(run: WargameRun | None, apv) -> bool:
    """Whether ``run``'s verdict is about ``apv``: the run is of a patch and its exploit
    covers the APV's advisory."""
    return (run is not None and run.patch_id is not None
            and apv.advisory.osv_id in (run.advisories or []))


def run_latest_for_patch(patch) -> WargameRun | None:
    """The newest run of a patch revision, in any state (one per revision in practice)."""
    if patch is None:
        return None
    return WargameRun.objects.filter(patch=patch).order_by("-id").first()


def run_for_apv(apv) -> WargameRun | None:
    """The latest finished run of the APV's current patch that covers the APV's advisory,
    or None (not wargamed yet, or "no exploit" for this advisory)."""
    if apv.current_patch_id is None:
        return None
    runs = WargameRun.objects.filter(patch_id=apv.current_patch_id,
                                     state=RunState.FINISHED).order_by("-id")
    return next((run for run in runs if run_covers(run, apv)), None)


def apv_wargame(apv) -> dict | None:
    """The current patch's wargame as it concerns this APV, for the API and the decision
    audit: null when the patch has no run; otherwise the run with ``exploit_covers``, and
    ``verdict``/``confidence`` null when the exploit does not cover the APV's advisory
    ("no exploit": the run proves nothing about it)."""
    run = run_latest_for_patch(apv.current_patch) if apv.current_patch_id else None
    if run is None:
        return None
    covers = run_covers(run, apv)
    finished = run.state == RunState.FINISHED
    summary = {
        "run": run.pk, "state": run.state, "exploit_covers": covers,
        "verdict": run.verdict if covers and finished else None,
        "confidence": run.confidence if covers and finished else None,
        "reason": run.reason, "exploit": run.exploit, "advisories": list(run.advisories),
    }
    if finished and not covers:
        summary["reason"] = no_exploit_reason(run, apv)
    return summary


def no_exploit_reason(run: WargameRun, apv) -> str:
    covered = ", ".join(run.advisories) or "no advisory"
    return (f"no exploit for {apv.advisory.osv_id}: the run's exploit covers {covered}, "
            "so its verdict says nothing about this advisory")


def covering_runs(*, patch=None, osv_id=None) -> QuerySet[WargameRun]:
    """Finished runs of ``patch`` whose exploit covers ``osv_id``, newest first; both may be
    expressions (``OuterRef``) for a subquery. Portable SQL: the JSON list's text holds
    the id in double quotes on SQLite and PostgreSQL alike (OSV ids hold no quote)."""
    patch = OuterRef("current_patch") if patch is None else patch
    osv_id = OuterRef("advisory__osv_id") if osv_id is None else osv_id
    osv_id = osv_id if hasattr(osv_id, "resolve_expression") else Value(osv_id)
    return (WargameRun.objects.filter(patch=patch, state=RunState.FINISHED)
            .annotate(advisories_text=Cast(F("advisories"), TextField()))
            .filter(advisories_text__contains=Concat(Value('"'), osv_id, Value('"'),
                                                     output_field=TextField()))
            .order_by("-id"))


def _runs() -> QuerySet[WargameRun]:
    return WargameRun.objects.select_related("patch").prefetch_related(
        "phases", "patch__apvs__advisory")


def run_list(*, apv: list[str] = (), patch: list[int] = (), verdict: list[str] = (),
             state: list[str] = (), kind: list[str] = ()) -> QuerySet[WargameRun]:
    """Runs (the REST list), by APV (runs of patches covering them), patch, verdict, state
    and kind; phases and the patch's APVs prefetched."""
    qs = _runs()
    if apv:
        qs = qs.filter(patch__in=Patch.apvs.through.objects.filter(
            apv__code__in=list(apv)).values("patch_id"))
    if patch:
        qs = qs.filter(patch_id__in=list(patch))
    if verdict:
        qs = qs.filter(verdict__in=list(verdict))
    if state:
        qs = qs.filter(state__in=list(state))
    if kind:
        qs = qs.filter(kind__in=list(kind))
    return qs
