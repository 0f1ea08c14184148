"""HTTP wargames: the project's service started from each revision, attacked over loopback.

Each phase is one sandbox (sandbox.py): the revision's files (``git archive`` of the
commit) as a private writable copy at ``/srv/app``, the exploit in ``/work``, and a network
namespace of the phase's own in which only loopback exists. Inside it the driver
(``sandbox_driver.py http``) starts the service with the project's ``service_command`` on a
free loopback port, waits until ``service_ready_path`` answers 200, runs the exploit for
the patch's CWE with ``IMMUNE_TARGET_URL``, and reports. The service is a reviewer's code:
it gets no more than the exploit (no host files, no secrets, no network, the phase's
limits). The regression phase runs the project's ``test_command`` in a sandbox of its own.

``python``/``python3`` in a command means the wargame interpreter (``WARGAME_PYTHON``):
the service runs with the standard library of that interpreter, not immune's packages.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import time

from django.conf import settings

from apps.inventory.git import exported_tree
from apps.wargaming.exploits import Exploit
from apps.wargaming.runner import PhaseResult, interpret, limits
from apps.wargaming.sandbox import OUTPUT_LIMIT, Sandbox, SandboxResult, SandboxUnavailable

READY_TIMEOUT_S = 20
SERVICE_ROOT = "/srv/app"


def _argv(command: str) -> list[str]:
    argv = shlex.split(command)
    if argv and argv[0] in ("python", "python3"):
        argv[0] = settings.WARGAME_PYTHON
    return argv


def http_phase(*, exploit: Exploit, repo: str, commit: str, command: str, ready_path: str,
               name: str) -> PhaseResult:
    phase_limits = limits()
    environment = [f"{command} @ {commit[:12]}"]
    try:
        with exported_tree(repo, commit) as tree, Sandbox(name, phase_limits) as box:
            app = box.private_copy(tree, SERVICE_ROOT)
            script = box.add_file(f"/work/{exploit.path.name}", exploit.path.read_bytes())
            spec = {"service_argv": _argv(command), "service_cwd": app,
                    "ready_path": ready_path, "ready_timeout_s": READY_TIMEOUT_S,
                    "exploit_argv": [settings.WARGAME_PYTHON, script],
                    "exploit_cwd": box.path("/work"),
                    "exploit_timeout_s": phase_limits.timeout_s, "env": box.environment(),
                    "output_limit": OUTPUT_LIMIT // 2}
            result = box.run([settings.WARGAME_PYTHON, box.path("/immune/driver.py"), "http",
                              json.dumps(spec)],
                             timeout_s=READY_TIMEOUT_S + phase_limits.timeout_s + 10)
    except SandboxUnavailable as exc:
        return PhaseResult(name=name, outcome="error", environment=environment,
                           reason=f"{exc} (no verdict without the sandbox)")
    phase = _phase_from_driver(result, name)
    phase.environment = environment
    return phase


def _phase_from_driver(result: SandboxResult, name: str) -> PhaseResult:
    base = {"name": name, "duration_s": round(result.duration_s, 3),
            "network_isolated": result.network_isolated, "sandbox": result.applied}
    if result.timed_out:
        return PhaseResult(outcome="timeout", reason="the phase ran out of time", **base)
    try:
        report = json.loads(result.stdout.strip().splitlines()[-1])
        if not isinstance(report, dict):
            raise ValueError("not an object")
    except (ValueError, IndexError):
        return PhaseResult(outcome="error", output=(result.stdout + result.stderr)[-8000:],
                           reason="the phase ended without a report (the service or the "
                                  "exploit broke the sandbox's driver)", **base)
    if not report.get("service_ready"):
        return PhaseResult(outcome="error", output=str(report.get("service_output", ""))[-8000:],
                           reason="the service did not become ready "
                                  f"(exit code {report.get('service_exit_code')})", **base)
    exploit = dataclasses.replace(result, exit_code=report.get("exit_code"),
                                  stdout=str(report.get("stdout", "")),
                                  stderr=str(report.get("stderr", "")),
                                  timed_out=bool(report.get("timed_out")))
    outcome, evidence, reason = interpret(exploit.stdout, exploit.exit_code, exploit.timed_out)
    output = exploit.stdout[-6000:] + ("\n--- stderr ---\n" + exploit.stderr[-4000:]
                                       if exploit.stderr.strip() else "")
    service_output = str(report.get("service_output", ""))
    if service_output.strip():
        output += "\n--- service ---\n" + service_output[-2000:]
    return PhaseResult(outcome=outcome, exit_code=exploit.exit_code,
                       exploited=evidence.get("exploited") if evidence else None,
                       evidence=evidence, output=output.replace("\x00", "\\0"), reason=reason,
                       **base)


def regression_phase(*, repo: str, commit: str, command: str) -> PhaseResult:
    started = time.monotonic()
    phase_limits = limits()
    try:
        with exported_tree(repo, commit) as tree, Sandbox("regression", phase_limits) as box:
            app = box.private_copy(tree, SERVICE_ROOT)
            result = box.run(_argv(command), cwd=app, timeout_s=phase_limits.timeout_s * 4)
    except SandboxUnavailable as exc:
        return PhaseResult(name="regression", outcome="error",
                           reason=f"{exc} (no verdict without the sandbox)")
    base = {"name": "regression", "duration_s": round(time.monotonic() - started, 3),
            "network_isolated": result.network_isolated, "sandbox": result.applied,
            "output": (result.stdout + result.stderr)[-8000:].replace("\x00", "\\0")}
    if result.timed_out:
        return PhaseResult(outcome="timeout", reason="the test command ran out of time", **base)
    outcome = "passed" if result.exit_code == 0 else "failed"
    return PhaseResult(outcome=outcome, exit_code=result.exit_code,
                       reason="" if outcome == "passed" else "the test command failed", **base)
