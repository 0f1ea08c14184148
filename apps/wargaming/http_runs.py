"""HTTP wargames: the project's service started from each revision, attacked over loopback.

Each phase has a network namespace of its own in which only loopback exists, shared by two
sandboxes (sandbox.py): the **service**, with the revision's files (``git archive`` of the
commit) as a private writable copy at ``/srv/app``, started with the project's
``service_command``; and the **exploit** for the patch's CWE, in its own ``/work``, started
by the driver (``sandbox_driver.py await``) once ``service_ready_path`` answers 200, with
``IMMUNE_TARGET_URL``. The service is a reviewer's code: it reaches the exploit only over
the network (no shared files, processes or ``HOME``), so it cannot rewrite the exploit, its
imports or its result. Where the worker is not root (no ``ip netns``), both run in one
sandbox (``sandbox_driver.py http``) and the run records that. The regression phase runs the
project's ``test_command`` in a sandbox of its own.

``python``/``python3`` in a command means the wargame interpreter (``WARGAME_PYTHON``):
the service runs with the standard library of that interpreter, not immune's packages.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import tarfile
import time

from django.conf import settings

from apps.inventory.git import GitError, exported_tree
from apps.wargaming.exploits import Exploit
from apps.wargaming.runner import PhaseResult, add_exploit, limits, phase_from
from apps.wargaming.sandbox import (
    OUTPUT_LIMIT,
    Sandbox,
    SandboxResult,
    SandboxUnavailable,
    shared_network,
)
from apps.wargaming.sandbox_driver import NOT_READY

READY_TIMEOUT_S = 20
NOT_READY_EXIT = 97
SERVICE_ROOT = "/srv/app"


def _argv(command: str) -> list[str]:
    argv = shlex.split(command)
    if argv and argv[0] in ("python", "python3"):
        argv[0] = settings.WARGAME_PYTHON
    return argv


SERVICE_PORT = 8000  # the phase's network namespace is new: every port is free


def http_phase(*, exploit: Exploit, repo: str, commit: str, command: str, ready_path: str,
               name: str) -> PhaseResult:
    environment = [f"{command} @ {commit[:12]}"]
    try:
        with exported_tree(repo, commit) as tree, shared_network() as netns:
            if netns is not None:
                phase = _two_sandboxes(exploit, tree, command, ready_path, name, netns)
            else:
                phase = _one_sandbox(exploit, tree, command, ready_path, name)
    except SandboxUnavailable as exc:
        return PhaseResult(name=name, outcome="error", environment=environment,
                           reason=f"{exc} (no verdict without the sandbox)")
    except (GitError, tarfile.TarError, OSError) as exc:
        return PhaseResult(name=name, outcome="error", environment=environment,
                           reason=f"the revision's files could not be prepared: "
                                  f"{type(exc).__name__}: {exc}")
    phase.environment = environment
    return phase


def _two_sandboxes(exploit: Exploit, tree, command: str, ready_path: str, name: str,
                   netns: str) -> PhaseResult:
    phase_limits = limits()
    url = f"http://127.0.0.1:{SERVICE_PORT}"
    with Sandbox(f"{name}-service", phase_limits, netns=netns) as service_box, \
            Sandbox(name, phase_limits, netns=netns) as box:
        app = service_box.private_copy(tree, SERVICE_ROOT)
        service = service_box.start(_argv(command.replace("{port}", str(SERVICE_PORT))),
                                    cwd=app)
        try:
            script = add_exploit(box, exploit)
            argv = [settings.WARGAME_PYTHON, box.path("/immune/driver.py"), "await",
                    url + ready_path, str(READY_TIMEOUT_S), "--",
                    settings.WARGAME_PYTHON, script]
            result = box.start(argv, env=box.environment({"IMMUNE_TARGET_URL": url})) \
                .finish(READY_TIMEOUT_S + phase_limits.timeout_s)
        finally:
            service_result = service.finish(0)
    service_output = service_result.stdout + service_result.stderr
    sandbox = {**result.applied, "service": {
        k: v for k, v in service_result.applied.items()
        if k in ("memory_peak_bytes", "oom_kills", "pids_limit_hits")},
        "layout": "service and exploit in two sandboxes sharing one network"}
    if result.exit_code == NOT_READY_EXIT and NOT_READY in result.stderr:
        return PhaseResult(name=name, outcome="error", output=service_output[-2000:],
                           duration_s=round(result.duration_s, 3),
                           network_isolated=result.network_isolated, sandbox=sandbox,
                           reason="the service did not become ready (exit code "
                                  f"{service_result.exit_code})")
    phase = phase_from(result, name=name, service_output=service_output)
    phase.sandbox = sandbox
    return phase


def _one_sandbox(exploit: Exploit, tree, command: str, ready_path: str,
                 name: str) -> PhaseResult:
    phase_limits = limits()
    with Sandbox(name, phase_limits) as box:
        app = box.private_copy(tree, SERVICE_ROOT)
        script = add_exploit(box, exploit)
        spec = {"service_argv": _argv(command), "service_cwd": app,
                "ready_path": ready_path, "ready_timeout_s": READY_TIMEOUT_S,
                "exploit_argv": [settings.WARGAME_PYTHON, script],
                "exploit_cwd": box.path("/work"),
                "exploit_timeout_s": phase_limits.timeout_s, "env": box.environment(),
                "output_limit": OUTPUT_LIMIT // 2}
        result = box.run([settings.WARGAME_PYTHON, box.path("/immune/driver.py"), "http",
                          json.dumps(spec)],
                         timeout_s=READY_TIMEOUT_S + phase_limits.timeout_s + 10)
    phase = _phase_from_driver(result, name)
    phase.sandbox["layout"] = "service and exploit in one sandbox (no shared network here)"
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
    return phase_from(exploit, name=name,
                      service_output=str(report.get("service_output", "")))


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
            "output": (result.stdout + result.stderr)[-8000:]}
    if result.timed_out:
        return PhaseResult(outcome="timeout", reason="the test command ran out of time", **base)
    outcome = "passed" if result.exit_code == 0 else "failed"
    return PhaseResult(outcome=outcome, exit_code=result.exit_code,
                       reason="" if outcome == "passed" else "the test command failed", **base)
