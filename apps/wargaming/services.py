"""Starting and recording wargames (for a patch, or for a package pair outside projects)."""

from __future__ import annotations

import math
import os
import re
import socket
from datetime import timedelta
from pathlib import Path

import structlog
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from apps.core.queue import enqueue_on_commit
from apps.core.realtime import send_event
from apps.inventory.git import GitError, exported_tree
from apps.inventory.manifests import parse_project
from apps.reviews.models import APVStatus, Patch, PatchStrategy
from apps.reviews.services.apvs import apvs_move_for_patch
from apps.wargaming import runner
from apps.wargaming.errors import WargameInvalid
from apps.wargaming.evidence import clean_text, sanitise_evidence
from apps.wargaming.exploits import Exploit, exploit_for_advisory, exploit_for_cwe, parse_exploit
from apps.wargaming.hooks import run_finished
from apps.wargaming.models import RunState, Verdict, WargamePhase, WargameRun
from apps.wargaming.scope import AdvisoryRef, covered_advisories

log = structlog.get_logger(__name__)

#: The trigger of an A/B testing shadow run (a ground-truth wargame of an ML-routed patch).
SHADOW_TRIGGER = "ab_test"

#: Characters of a phase's output kept (the runner keeps less; this is the last guard).
PHASE_OUTPUT_LIMIT = 64_000
REASON_LIMIT = 2_000
REAP_REASON = "ended by the reaper: ran past its deadline (worker lost?)"


def _progress(run: WargameRun, phase: str, state: str, started) -> None:
    # The APVs the run is about, under "apvs" (a revision may cover several; every event
    # names APVs by code, docs/api.md "WebSocket").
    apvs = sorted(run.patch.apvs.values_list("code", flat=True)) if run.patch_id else []
    send_event("wargames", "wargame.progress", {
        "run": run.pk, "patch": run.patch_id, "apvs": apvs, "phase": phase, "state": state,
        "elapsed_s": round((timezone.now() - started).total_seconds(), 2)})


class _ClaimLost(Exception):
    """The run is no longer this attempt's (reaped, or re-claimed after a redelivery)."""


def _claim_filter(run: WargameRun) -> dict:
    return {"pk": run.pk, "state": RunState.RUNNING, "claimed_by": run.claimed_by,
            "started_at": run.started_at}


def _store(run: WargameRun, result: runner.RunResult, *,
           free_apvs: bool = False) -> WargameRun:
    """Record a finished run (and, with ``free_apvs``, move its APVs validating →
    pending_review in the same transaction). Whatever the exploit printed, the run ends:
    phases are sanitised first (a malformed evidence is an ``error`` with the reason), and
    when storing still fails the run is recorded ``error`` on its own. Only the attempt
    that holds the claim writes: a run the reaper ended or another worker re-claimed
    meanwhile keeps what they wrote."""
    phases, verdict, confidence, reason = _sanitised(result)
    sandbox_limits, _ = sanitise_evidence(result.sandbox or {})
    now = timezone.now()
    try:
        with transaction.atomic():
            won = WargameRun.objects.filter(**_claim_filter(run)).update(
                state=RunState.FINISHED, verdict=verdict, confidence=confidence,
                reason=reason, network_isolated=result.network_isolated,
                sandbox=sandbox_limits, finished_at=now, duration_s=_finite(result.duration_s),
                exploit=run.exploit, advisories=run.advisories,
                baseline_version=run.baseline_version, patched_version=run.patched_version,
                updated_at=now)
            if not won:
                raise _ClaimLost
            WargamePhase.objects.filter(run_id=run.pk).delete()
            WargamePhase.objects.bulk_create(
                [WargamePhase(run_id=run.pk, **fields) for fields in phases])
            if free_apvs:
                _free_apvs(run)
    except _ClaimLost:
        log.warning("wargame.claim_lost", run=run.pk, claimed_by=run.claimed_by,
                    verdict_dropped=verdict)
    except Exception as exc:  # noqa: BLE001 (a run must end, whatever broke the write)
        log.exception("wargame.store_failed", run=run.pk)
        return _store_failure(run, exc, free_apvs=free_apvs)
    run.refresh_from_db()
    return run


def _sanitised(result: runner.RunResult) -> tuple[list[dict], str, float, str]:
    """The phases' fields as they can be stored, and the run's verdict, confidence and
    reason: ``error`` when an evidence could not be kept as the exploit wrote it."""
    verdict, confidence = result.verdict, result.confidence
    reason = clean_text(result.reason, REASON_LIMIT)
    phases = []
    for phase in result.phases:
        evidence, problem = sanitise_evidence(phase.evidence)
        outcome = phase.outcome
        if problem:
            outcome = "error"
            if verdict != Verdict.ERROR:
                verdict, confidence = Verdict.ERROR, 0.0
                reason = clean_text(f"{phase.name}: {problem} (no verdict about the patch)",
                                    REASON_LIMIT)
        phases.append({
            "name": clean_text(phase.name, None)[:12],
            "outcome": clean_text(outcome, None)[:20],
            "exit_code": phase.exit_code, "exploited": phase.exploited,
            "duration_s": _finite(phase.duration_s), "evidence": evidence,
            "output": clean_text(phase.output, PHASE_OUTPUT_LIMIT),
            "environment": [clean_text(line, 1000) for line in phase.environment or []]})
    return phases, verdict, _finite(confidence), reason


def _finite(number) -> float | None:
    if number is None or not math.isfinite(number):
        return None
    return number


def _store_failure(run: WargameRun, exc: Exception, *, free_apvs: bool) -> WargameRun:
    """The last resort of ``_store``: the run ends ``error`` in a transaction of its own."""
    now = timezone.now()
    with transaction.atomic():
        ended = WargameRun.objects.filter(**_claim_filter(run)).update(
            state=RunState.FINISHED, verdict=Verdict.ERROR, confidence=0.0,
            reason=f"could not store the run: {type(exc).__name__}", finished_at=now,
            updated_at=now)
        if ended and free_apvs:
            _free_apvs(run)
    run.refresh_from_db()
    return run


def _free_apvs(run: WargameRun) -> None:
    """The run's APVs leave ``validating`` for review."""
    if run.patch_id is not None:
        apvs_move_for_patch(patch=run.patch, status=APVStatus.PENDING_REVIEW,
                            before=(APVStatus.VALIDATING,))


def wargame_run_package(*, package: str, vulnerable: str, fixed: str,
                        exploit_path: str | None = None, with_requirements=(),
                        trigger: str = "command") -> WargameRun:
    """Both phases for one package pair outside any project (trying out a PoC)."""
    from packaging.utils import canonicalize_name

    name = canonicalize_name(package)
    if exploit_path:
        exploit = parse_exploit(Path(exploit_path))
        if exploit is None:
            raise WargameInvalid(f"{exploit_path} is not an immune exploit (no "
                                 "'# immune-exploit: 1' header)")
    else:
        exploit = next((e for e in _package_exploits() if e.package == name), None)
        if exploit is None:
            raise WargameInvalid(f"no exploit for {name} in the library; pass --exploit FILE")
    extra = [*exploit.requires, *with_requirements]
    run = WargameRun.objects.create(kind="package", package=name, baseline_version=vulnerable,
                                    patched_version=fixed, exploit=str(exploit.path),
                                    state=RunState.RUNNING, started_at=timezone.now(),
                                    claimed_by=worker_identity(), attempts=1,
                                    advisories=sorted(exploit.advisories), trigger=trigger)
    try:
        result = runner.run_package_pair(exploit, baseline=[f"{name}=={vulnerable}", *extra],
                                         patched=[f"{name}=={fixed}", *extra])
    except Exception as exc:  # noqa: BLE001 (any crash ends the run, with its class)
        log.exception("wargame.crashed", run=run.pk)
        result = _crashed(exc)
    return _store(run, result)


def _package_exploits() -> list[Exploit]:
    from apps.wargaming.exploits import exploit_index

    return [e for e in exploit_index() if e.kind == "package"]


def _pins_at(project, commit: str, names: set[str]) -> dict[str, str]:
    """Exact requirement lines (with markers) for ``names`` in the manifests at ``commit``."""
    pins: dict[str, str] = {}
    with exported_tree(project.path, commit) as tree:
        for manifest in parse_project(tree):
            for dep in manifest.dependencies:
                if dep.normalised_name in names and dep.version and dep.normalised_name not in pins:
                    marker = f"; {dep.marker}" if dep.marker else ""
                    pins[dep.normalised_name] = f"{dep.normalised_name}=={dep.version}{marker}"
    return pins


def _requirements(exploit: Exploit, patch: Patch, commit: str, version: str) -> list[str]:
    """The package under test at this revision plus the exploit's companions, where the
    project pins a companion its own pin wins (so its markers and versions apply)."""
    from packaging.requirements import Requirement

    companions = {}
    for line in exploit.requires:
        try:
            companions[Requirement(line).name.lower()] = line
        except ValueError:
            continue
    pins = _pins_at(patch.project, commit, {patch.package, *companions})
    target = pins.get(patch.package, f"{patch.package}=={version}")
    return [target, *(pins.get(name, line) for name, line in companions.items())]


def _advisory_ids(patch: Patch) -> set[str]:
    ids: set[str] = set()
    for apv in patch.apvs.select_related("advisory"):
        ids |= {apv.advisory.osv_id, *apv.advisory.aliases}
    return ids


def _advisory_refs(patch: Patch) -> list[AdvisoryRef]:
    return [AdvisoryRef(apv.advisory.osv_id, tuple(apv.advisory.aliases),
                        tuple(apv.advisory.cwe_ids))
            for apv in patch.apvs.select_related("advisory")]


def patch_exploit(patch: Patch) -> Exploit | None:
    """The exploit a wargame of this patch revision runs (None: nothing to attack with)."""
    if patch.strategy == PatchStrategy.CODE_PATCH:
        cwes = sorted({c for apv in patch.apvs.select_related("advisory")
                       for c in apv.advisory.cwe_ids} | set(patch_cwes(patch)))
        return exploit_for_cwe(cwes)
    if patch.strategy == PatchStrategy.DEPENDENCY_UPGRADE:
        return exploit_for_advisory(_advisory_ids(patch), patch.package)
    return None


def exploit_coverage(patch: Patch, exploit: Exploit | None) -> list[str]:
    """The OSV ids of the patch's advisories ``exploit`` covers (verdict scope)."""
    if exploit is None:
        return []
    return covered_advisories(kind=exploit.kind, exploit_advisories=exploit.advisories,
                              exploit_cwe=exploit.cwe, advisories=_advisory_refs(patch),
                              patch_cwes=patch_cwes(patch))


def wargame_start(*, patch: Patch, trigger: str) -> tuple[WargameRun, bool]:
    """The run for this patch revision: created queued, or the existing one (idempotent)."""
    try:
        with transaction.atomic():
            run = WargameRun.objects.create(
                patch=patch, patch_revision=patch.revision, state=RunState.QUEUED,
                kind="http" if patch.strategy == PatchStrategy.CODE_PATCH else "package",
                package=patch.package, trigger=trigger)
            return run, True
    except IntegrityError:
        return WargameRun.objects.get(patch=patch, patch_revision=patch.revision), False


def worker_identity() -> str:
    """``hostname:pid`` of this process, as recorded in ``WargameRun.claimed_by``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _run_budget() -> timedelta:
    """How long a run may stay ``running`` before it is presumed lost."""
    return timedelta(seconds=settings.WARGAME_RUN_TIMEOUT_S + settings.WARGAME_REAP_GRACE_S)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


def claim_is_stale(*, claimed_by: str, started_at, now=None) -> bool:
    """Whether a ``running`` run's claim is dead: its claimant was a process on this host
    that no longer exists, or it started longer ago than the run timeout plus the grace."""
    now = now or timezone.now()
    if started_at is None or started_at < now - _run_budget():
        return True
    host, _, pid = (claimed_by or "").rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and not _pid_alive(int(pid))


def _claim(run: WargameRun) -> bool:
    """Take the run for this process: a queued one, or a running one whose claim is stale
    (a redelivered task after its worker died). Compare-and-set, so of two redeliveries
    exactly one wins; the winner drops what an earlier attempt left."""
    now = timezone.now()
    taken = {"state": RunState.RUNNING, "started_at": now, "claimed_by": worker_identity(),
             "attempts": F("attempts") + 1, "advisories": [], "updated_at": now}
    with transaction.atomic():
        if WargameRun.objects.filter(pk=run.pk, state=RunState.QUEUED).update(**taken):
            return True
        current = (WargameRun.objects.filter(pk=run.pk, state=RunState.RUNNING)
                   .values("claimed_by", "started_at").first())
        if current is None or not claim_is_stale(now=now, **current):
            return False
        won = WargameRun.objects.filter(
            pk=run.pk, state=RunState.RUNNING, claimed_by=current["claimed_by"],
            started_at=current["started_at"]).update(**taken)
        if won:
            WargamePhase.objects.filter(run_id=run.pk).delete()
            log.warning("wargame.reclaimed", run=run.pk, previous=current["claimed_by"],
                        started_at=str(current["started_at"]))
        return bool(won)


def _crashed(exc: BaseException) -> runner.RunResult:
    from celery.exceptions import SoftTimeLimitExceeded

    if isinstance(exc, SoftTimeLimitExceeded):
        return runner.RunResult(Verdict.TIMEOUT, 0.0, "the run passed its time limit "
                                "(WARGAME_RUN_TIMEOUT_S)", [], None, 0.0, {})
    if isinstance(exc, GitError | WargameInvalid):
        return runner.RunResult(Verdict.ERROR, 0.0, str(exc), [], None, 0.0, {})
    return runner.RunResult(Verdict.ERROR, 0.0, f"the wargame crashed: {type(exc).__name__}: "
                            f"{exc}", [], None, 0.0, {})


def wargame_execute(*, run: WargameRun) -> WargameRun:
    """Run a wargame for its patch. A queued run is claimed; a running one is left alone
    unless its claim is stale (its worker died), then it runs again. Every claimed run
    ends: whatever goes wrong after the claim, the run is stored (``error`` with the
    exception when nothing better is known) and its APVs leave ``validating``."""
    claimed = _claim(run)
    run.refresh_from_db()
    if not claimed:
        return run
    patch = run.patch
    # An A/B shadow run checks the model behind the review's back: the APV stays where
    # ML-first put it (pending_review), the review is never held back by it.
    shadow = run.trigger == SHADOW_TRIGGER
    started = timezone.now()
    try:
        if not shadow:
            apvs_move_for_patch(patch=patch, status=APVStatus.VALIDATING,
                                before=(APVStatus.PATCH_PROPOSED, APVStatus.PENDING_REVIEW))
        result = _execute(run, patch, started)
    except Exception as exc:  # noqa: BLE001 (any crash ends the run, with its class)
        if not isinstance(exc, GitError | WargameInvalid):
            log.exception("wargame.crashed", run=run.pk)
        result = _crashed(exc)
    run = _store(run, result, free_apvs=not shadow)
    _settle(run)
    _progress(run, "run", run.verdict, started)
    log.info("wargame.finished", run=run.pk, patch=patch.pk, verdict=run.verdict,
             attempts=run.attempts)
    return run


def wargame_reap(*, now=None) -> dict:
    """End what a lost worker left (beat ``wargaming.reap``, every minute; idempotent, and
    two reapers at once end each run once: every end is a conditional UPDATE).

    - ``running`` runs past ``started_at`` + WARGAME_RUN_TIMEOUT_S + WARGAME_REAP_GRACE_S
      end ``timeout`` and their APVs go validating → pending_review (A/B shadow runs never
      moved theirs);
    - ``queued`` runs nobody started within WARGAME_REQUEUE_AFTER_S are enqueued again,
      once;
    - the sandbox removes what old runs left (cgroups, temporary folders).
    """
    from apps.wargaming import sandbox

    now = now or timezone.now()
    cutoff = now - _run_budget()
    reaped = []
    late = WargameRun.objects.filter(state=RunState.RUNNING).filter(
        Q(started_at__lt=cutoff) | Q(started_at__isnull=True, updated_at__lt=cutoff))
    for run in late.select_related("patch"):
        with transaction.atomic():
            ended = WargameRun.objects.filter(
                pk=run.pk, state=RunState.RUNNING, started_at=run.started_at).update(
                state=RunState.FINISHED, verdict=Verdict.TIMEOUT, confidence=0.0,
                reason=REAP_REASON, finished_at=now, updated_at=now,
                duration_s=round((now - run.started_at).total_seconds(), 3)
                if run.started_at else None)
            if not ended:
                continue  # finished, re-claimed or reaped meanwhile
            if run.trigger != SHADOW_TRIGGER:
                _free_apvs(run)
        run.refresh_from_db()
        reaped.append(run.pk)
        log.warning("wargame.reaped", run=run.pk, claimed_by=run.claimed_by,
                    started_at=str(run.started_at))
        _settle(run)
        _progress(run, "run", run.verdict, run.started_at or now)
    requeued = _requeue_stale_queued(now)
    leftovers = sandbox.reap_leftovers(
        older_than_s=settings.WARGAME_RUN_TIMEOUT_S + settings.WARGAME_REAP_GRACE_S)
    return {"reaped": reaped, "requeued": requeued, "leftovers": leftovers}


def _requeue_stale_queued(now) -> list[int]:
    from apps.wargaming.tasks import run_wargame

    cutoff = now - timedelta(seconds=settings.WARGAME_REQUEUE_AFTER_S)
    requeued = []
    for pk in WargameRun.objects.filter(state=RunState.QUEUED, created_at__lt=cutoff,
                                        requeued_at__isnull=True).values_list("pk", flat=True):
        if WargameRun.objects.filter(pk=pk, state=RunState.QUEUED,
                                     requeued_at__isnull=True).update(requeued_at=now):
            requeued.append(pk)
            enqueue_on_commit(run_wargame, pk)
    if requeued:
        log.warning("wargame.requeued", runs=requeued)
    return requeued


def _settle(run: WargameRun) -> None:
    """A finished run is ground truth for the predictions about its patch revision and,
    when A/B testing sampled it, an ABTestResult: announced to them (``hooks.run_finished``),
    both written or neither."""
    with transaction.atomic():
        run_finished(run=run)


def _execute(run: WargameRun, patch: Patch, started) -> runner.RunResult:
    if patch.strategy == PatchStrategy.CODE_PATCH:
        return _execute_http(run, patch, started)
    if patch.strategy != PatchStrategy.DEPENDENCY_UPGRADE or not patch.branch:
        return runner.RunResult(Verdict.INCONCLUSIVE, 0.0,
                                f"a {patch.strategy} patch has no code to attack", [], None,
                                0.0, {})
    exploit = exploit_for_advisory(_advisory_ids(patch), patch.package)
    if exploit is None:
        return runner.RunResult(Verdict.INCONCLUSIVE, 0.0,
                                "no exploit in the library or WARGAME_EXPLOIT_DIRS names "
                                f"these advisories ({', '.join(sorted(_advisory_ids(patch)))})",
                                [], None, 0.0, {})
    run.exploit = str(exploit.path)
    run.advisories = exploit_coverage(patch, exploit)
    run.baseline_version, run.patched_version = patch.from_version, patch.target_version
    run.save(update_fields=["exploit", "advisories", "baseline_version", "patched_version",
                            "updated_at"])
    _progress(run, "baseline", "running", started)
    result = runner.run_package_pair(
        exploit,
        baseline=_requirements(exploit, patch, patch.base_commit, patch.from_version),
        patched=_requirements(exploit, patch, patch.commit_sha, patch.target_version))
    return result


def _execute_http(run: WargameRun, patch: Patch, started) -> runner.RunResult:
    from apps.wargaming import http_runs

    project = patch.project
    if not project.service_command:
        return runner.RunResult(Verdict.INCONCLUSIVE, 0.0, f"{project.name} declares no "
                                "service_command, so its service cannot be attacked",
                                [], None, 0.0, {})
    cwes = sorted({c for apv in patch.apvs.select_related("advisory")
                   for c in apv.advisory.cwe_ids} | set(patch_cwes(patch)))
    exploit = exploit_for_cwe(cwes)
    if exploit is None:
        return runner.RunResult(Verdict.INCONCLUSIVE, 0.0,
                                f"no HTTP exploit for {', '.join(cwes) or 'an unknown CWE'}",
                                [], None, 0.0, {})
    run.exploit = str(exploit.path)
    run.advisories = exploit_coverage(patch, exploit)
    run.save(update_fields=["exploit", "advisories", "updated_at"])
    t0 = timezone.now()
    common = {"exploit": exploit, "repo": project.path, "command": project.service_command,
              "ready_path": project.service_ready_path or "/"}
    _progress(run, "baseline", "running", started)
    baseline = http_runs.http_phase(commit=patch.base_commit, name="baseline", **common)
    patched = regression = None
    if baseline.outcome == "exploited":
        _progress(run, "patched", "running", started)
        patched = http_runs.http_phase(commit=patch.commit_sha, name="patched", **common)
        if patched.outcome == "blocked" and project.test_command:
            _progress(run, "regression", "running", started)
            regression = http_runs.regression_phase(repo=project.path, commit=patch.commit_sha,
                                                    command=project.test_command)
    verdict, confidence, reason = runner.verdict_of(baseline, patched, regression)
    phases = [p for p in (baseline, patched, regression) if p is not None]
    isolated = [p.network_isolated for p in phases if p.network_isolated is not None]
    return runner.RunResult(verdict, confidence, reason, phases,
                            network_isolated=all(isolated) if isolated else None,
                            duration_s=round((timezone.now() - t0).total_seconds(), 3),
                            sandbox=runner.sandbox_record(phases))


def patch_cwes(patch: Patch) -> list[str]:
    """A code patch may name its CWE in its title or notes, e.g. "CWE-89"."""
    text = " ".join([patch.title, *patch.notes])
    return [m.upper() for m in re.findall(r"CWE-\d+", text, flags=re.IGNORECASE)]
