"""Starting and recording wargames (for a patch, or for a package pair outside projects)."""

from __future__ import annotations

import re
from pathlib import Path

import structlog
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.core.realtime import send_event
from apps.inventory.git import GitError, exported_tree
from apps.inventory.manifests import parse_project
from apps.reviews.models import APVStatus, Patch, PatchStrategy
from apps.reviews.services.apvs import apvs_move_for_patch
from apps.wargaming import runner
from apps.wargaming.errors import WargameInvalid
from apps.wargaming.exploits import Exploit, exploit_for_advisory, exploit_for_cwe, parse_exploit
from apps.wargaming.models import RunState, Verdict, WargamePhase, WargameRun

log = structlog.get_logger(__name__)

#: The trigger of an A/B testing shadow run (a ground-truth wargame of an ML-routed patch).
SHADOW_TRIGGER = "ab_test"


def _progress(run: WargameRun, phase: str, state: str, started) -> None:
    send_event("wargames", "wargame.progress", {
        "run": run.pk, "patch": run.patch_id, "phase": phase, "state": state,
        "elapsed_s": round((timezone.now() - started).total_seconds(), 2)})


def _store(run: WargameRun, result: runner.RunResult) -> WargameRun:
    with transaction.atomic():
        for phase in result.phases:
            WargamePhase.objects.create(
                run=run, name=phase.name, outcome=phase.outcome, exit_code=phase.exit_code,
                exploited=phase.exploited, duration_s=phase.duration_s,
                evidence=phase.evidence, output=phase.output, environment=phase.environment)
        run.state = RunState.FINISHED
        run.verdict, run.confidence, run.reason = result.verdict, result.confidence, result.reason
        run.network_isolated = result.network_isolated
        run.sandbox = result.sandbox
        run.finished_at = timezone.now()
        run.duration_s = result.duration_s
        run.save()
    return run


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
                                    trigger=trigger)
    result = runner.run_package_pair(exploit, baseline=[f"{name}=={vulnerable}", *extra],
                                     patched=[f"{name}=={fixed}", *extra])
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


def wargame_execute(*, run: WargameRun) -> WargameRun:
    """Run a queued wargame for its patch; a run already started is left alone, so a
    redelivered task never attacks the same revision twice."""
    claimed = WargameRun.objects.filter(pk=run.pk, state=RunState.QUEUED).update(
        state=RunState.RUNNING, started_at=timezone.now())
    run.refresh_from_db()
    if not claimed:
        return run
    patch = run.patch
    # An A/B shadow run checks the model behind the review's back: the APV stays where
    # ML-first put it (pending_review), the review is never held back by it.
    shadow = run.trigger == SHADOW_TRIGGER
    if not shadow:
        apvs_move_for_patch(patch=patch, status=APVStatus.VALIDATING,
                            before=(APVStatus.PATCH_PROPOSED, APVStatus.PENDING_REVIEW))
    started = timezone.now()
    try:
        result = _execute(run, patch, started)
    except (GitError, WargameInvalid) as exc:
        result = runner.RunResult(Verdict.ERROR, 0.0, str(exc), [], None, 0.0, {})
    finally:
        if not shadow:
            apvs_move_for_patch(patch=patch, status=APVStatus.PENDING_REVIEW,
                                before=(APVStatus.VALIDATING,))
    run = _store(run, result)
    _settle(run)
    _progress(run, "run", run.verdict, started)
    log.info("wargame.finished", run=run.pk, patch=patch.pk, verdict=run.verdict)
    return run


def _settle(run: WargameRun) -> None:
    """A finished run is ground truth for the predictions about its patch revision and,
    when A/B testing sampled it, an ABTestResult."""
    from apps.ab_testing.services import ab_result_record
    from apps.ml.services import predictions_settle

    with transaction.atomic():
        predictions_settle(run=run)
        ab_result_record(run=run)


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
    run.baseline_version, run.patched_version = patch.from_version, patch.target_version
    run.save(update_fields=["exploit", "baseline_version", "patched_version", "updated_at"])
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
    run.save(update_fields=["exploit", "updated_at"])
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
    return runner.RunResult(verdict, confidence, reason, phases, network_isolated=False,
                            duration_s=round((timezone.now() - t0).total_seconds(), 3),
                            sandbox={"exploit_network": "host loopback (to reach the service)"})


def patch_cwes(patch: Patch) -> list[str]:
    """A code patch may name its CWE in its title or notes, e.g. "CWE-89"."""
    text = " ".join([patch.title, *patch.notes])
    return [m.upper() for m in re.findall(r"CWE-\d+", text, flags=re.IGNORECASE)]
