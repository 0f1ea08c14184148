"""Phases and verdicts: an exploit run for real against the unpatched and patched code.

Verdict rules (spec, Pipeline 5; docs/wargaming.md):
- a phase that crashed (no JSON line last, or a line disagreeing with the exit code, or a
  traceback) is ``error``; one that ran out of time is ``timeout``; an environment that
  would not install is ``error`` with the installer's output. None of these is a verdict
  about the patch.
- baseline exit 2 → ``inconclusive``; baseline not exploited → ``not_reproducible``.
- baseline exploited, patched exploited → ``patch_ineffective``.
- baseline exploited, patched blocked → ``patch_effective`` (or ``regression`` when the
  project's test command fails on the patched code).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from apps.wargaming.environments import EnvironmentError_, environment_for
from apps.wargaming.exploits import HARNESS, Exploit
from apps.wargaming.models import Verdict
from apps.wargaming.sandbox import Limits, Sandbox, SandboxResult, SandboxUnavailable

EXIT_EXPLOITED, EXIT_BLOCKED, EXIT_INCONCLUSIVE = 1, 0, 2


@dataclass
class PhaseResult:
    name: str
    outcome: str  # exploited, blocked, inconclusive, error, timeout, passed, failed, skipped
    exit_code: int | None = None
    exploited: bool | None = None
    duration_s: float = 0.0
    evidence: dict = field(default_factory=dict)
    output: str = ""
    environment: list[str] = field(default_factory=list)
    network_isolated: bool | None = None
    reason: str = ""
    sandbox: dict = field(default_factory=dict)  # the limits that applied, peak usage


@dataclass
class RunResult:
    verdict: str
    confidence: float
    reason: str
    phases: list[PhaseResult]
    network_isolated: bool | None
    duration_s: float
    sandbox: dict


def limits() -> Limits:
    return Limits(timeout_s=settings.WARGAME_PHASE_TIMEOUT_S,
                  memory_bytes=settings.WARGAME_MEMORY_MB * 1024 * 1024,
                  max_processes=settings.WARGAME_MAX_PROCESSES,
                  tmpfs_bytes=settings.WARGAME_TMPFS_MB * 1024 * 1024)


def _no_constants(name: str):
    raise ValueError(f"{name} is not a JSON number")


def interpret(stdout: str, exit_code: int | None, timed_out: bool) -> tuple[str, dict, str]:
    """(outcome, evidence, reason) of one exploit process, by the exploit format's rules."""
    if timed_out:
        return "timeout", {}, "the exploit ran out of time"
    lines = [line for line in stdout.strip().splitlines() if line.strip()]
    try:
        # NaN and Infinity are not JSON (PostgreSQL refuses them): the line is malformed.
        evidence = json.loads(lines[-1], parse_constant=_no_constants) if lines else None
    except ValueError as exc:
        return "error", {}, (f"no JSON evidence line last on stdout ({exc}; "
                             f"exit code {exit_code})")
    if not isinstance(evidence, dict) or not isinstance(evidence.get("exploited"), bool):
        return "error", {}, f"no JSON evidence line last on stdout (exit code {exit_code})"
    # NUL, size and depth are the store's to settle (evidence.py, applied by _store).
    if exit_code == EXIT_INCONCLUSIVE:
        return "inconclusive", evidence, "the exploit reported it could not decide"
    expected = EXIT_EXPLOITED if evidence["exploited"] else EXIT_BLOCKED
    if exit_code != expected:
        return "error", evidence, (f"exit code {exit_code} disagrees with exploited="
                                   f"{evidence['exploited']}")
    return ("exploited" if evidence["exploited"] else "blocked"), evidence, ""


def run_exploit(exploit: Exploit, python: Path, *, extra_env: dict | None = None,
                name: str, environment: list[str] | None = None,
                env_path: Path | None = None) -> PhaseResult:
    """The PoC in a sandbox of its own: its environment read-only, a private /work."""
    try:
        with Sandbox(name, limits()) as box:
            if env_path is not None:
                box.bind(env_path)
            script = add_exploit(box, exploit)
            result = box.run([str(python), script], cwd=box.path("/work"),
                             env=box.environment(extra_env))
    except SandboxUnavailable as exc:
        return PhaseResult(name=name, outcome="error", environment=environment or [],
                           reason=f"{exc} (no verdict without the sandbox)")
    return phase_from(result, name=name, environment=environment)


def add_exploit(box: Sandbox, exploit: Exploit) -> str:
    """The PoC, read-only in the sandbox's /work, with the HTTP harness beside it (always,
    whatever folder the PoC came from: ``import _http_harness`` works, a PoC that does not
    import it is unaffected); where the process finds the PoC."""
    box.add_file(f"/work/{HARNESS.name}", HARNESS.read_bytes())
    # Added last: a PoC that happens to bear the harness's name is what runs.
    return box.add_file(f"/work/{exploit.path.name}", exploit.path.read_bytes())


def phase_from(result: SandboxResult, *, name: str, environment: list[str] | None = None,
               service_output: str = "") -> PhaseResult:
    """A phase from one exploit process's result, by the exploit format's rules (with the
    output of the service it attacked, for an HTTP phase). Text is made storable by
    ``_store`` (evidence.py)."""
    outcome, evidence, reason = interpret(result.stdout, result.exit_code, result.timed_out)
    output = result.stdout[-8000:] + ("\n--- stderr ---\n" + result.stderr[-8000:]
                                      if result.stderr.strip() else "")
    if service_output.strip():
        output += "\n--- service ---\n" + service_output[-2000:]
    if result.applied.get("oom_kills"):
        output += f"\n--- sandbox ---\n{result.applied['oom_kills']} process(es) killed at " \
                  "the phase's memory limit"
    return PhaseResult(name=name, outcome=outcome, exit_code=result.exit_code,
                       exploited=evidence.get("exploited") if evidence else None,
                       duration_s=round(result.duration_s, 3), evidence=evidence,
                       output=output, environment=environment or [],
                       network_isolated=result.network_isolated, reason=reason,
                       sandbox=result.applied)


def package_phase(exploit: Exploit, name: str, requirements: list[str]) -> PhaseResult:
    started = time.monotonic()
    try:
        env = environment_for(requirements, base=exploit.path.parent)
    except EnvironmentError_ as exc:
        return PhaseResult(name=name, outcome="error", output=exc.output[-8000:],
                           environment=requirements, duration_s=time.monotonic() - started,
                           reason=f"{exc} (an install failure is no verdict about the patch)")
    except SandboxUnavailable as exc:
        return PhaseResult(name=name, outcome="error", environment=requirements,
                           duration_s=time.monotonic() - started,
                           reason=f"{exc} (no verdict without the sandbox)")
    phase = run_exploit(exploit, env.python, name=name, environment=list(env.requirements),
                        env_path=env.path)
    phase.evidence.setdefault("environment_reused", env.reused)
    return phase


def verdict_of(baseline: PhaseResult, patched: PhaseResult | None,
               regression: PhaseResult | None = None) -> tuple[str, float, str]:
    """The run's verdict and confidence from its phases (documented in docs/wargaming.md)."""
    for phase in (baseline, patched):
        if phase is None:
            continue
        if phase.outcome == "timeout":
            return Verdict.TIMEOUT, 0.0, f"{phase.name}: {phase.reason}"
        if phase.outcome == "error":
            return Verdict.ERROR, 0.0, f"{phase.name}: {phase.reason}"
        if phase.outcome == "inconclusive":
            return Verdict.INCONCLUSIVE, 0.2, f"{phase.name}: {phase.reason}"
        if phase is baseline and phase.outcome == "blocked":
            return (Verdict.NOT_REPRODUCIBLE, 0.6,
                    "the exploit did not succeed against the unpatched code")
    assert patched is not None
    isolated = bool(baseline.network_isolated and patched.network_isolated)
    # Clean evidence on both sides is strong; a run without network isolation could have
    # been influenced from outside, so it counts for a little less.
    confidence = 0.95 if isolated else 0.85
    if patched.outcome == "exploited":
        return (Verdict.PATCH_INEFFECTIVE, confidence,
                "the exploit still succeeds against the patched code")
    if regression is not None and regression.outcome == "failed":
        return Verdict.REGRESSION, 0.9, "the project's tests fail on the patched code"
    return (Verdict.PATCH_EFFECTIVE, confidence,
            "exploited before the patch, blocked after it")


def run_package_pair(exploit: Exploit, *, baseline: list[str], patched: list[str]) -> RunResult:
    """Both phases for a package exploit; ``baseline``/``patched`` are requirement lists."""
    started = time.monotonic()
    deadline = started + settings.WARGAME_RUN_TIMEOUT_S
    first = package_phase(exploit, "baseline", baseline)
    second = None
    if first.outcome == "exploited":
        if time.monotonic() > deadline:
            second = PhaseResult(name="patched", outcome="timeout",
                                 reason="the run's time budget was spent before this phase")
        else:
            second = package_phase(exploit, "patched", patched)
    verdict, confidence, reason = verdict_of(first, second)
    phases = [first, second or PhaseResult(name="patched", outcome="skipped",
                                           reason="not run: baseline not exploited")]
    isolated = [p.network_isolated for p in phases if p.network_isolated is not None]
    return RunResult(verdict, confidence, reason, phases,
                     network_isolated=all(isolated) if isolated else None,
                     duration_s=round(time.monotonic() - started, 3),
                     sandbox=sandbox_record(phases))


#: Per-phase figures kept on the run beside the limits (which are the same for every phase).
_MEASURED = ("memory_peak_bytes", "oom_kills", "pids_limit_hits", "killed_at_end", "timeout_s")


def sandbox_record(phases: list[PhaseResult]) -> dict:
    """What confined the run: the limits that applied and each phase's measured usage."""
    record: dict = {"run_timeout_s": settings.WARGAME_RUN_TIMEOUT_S, "phases": {}}
    for phase in phases:
        if not phase.sandbox:
            continue
        record.update({k: v for k, v in phase.sandbox.items() if k not in _MEASURED})
        record["phases"][phase.name] = {k: phase.sandbox[k] for k in _MEASURED
                                        if k in phase.sandbox}
    return record
