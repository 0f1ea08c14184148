"""Every wargame run ends (issue 11): whatever an exploit printed, whatever crashed, whichever
worker died. Real exploits, real database, real processes; the only hand-made inputs are
RunResults (the runner's own dataclasses) for evidence no real runner lets through."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone

from apps.reviews.models import APV, APVStatus
from apps.reviews.services.apvs import apvs_move_for_patch
from apps.wargaming import runner
from apps.wargaming.evidence import EVIDENCE_LIMIT_BYTES, clean_text, sanitise_evidence
from apps.wargaming.models import WargameRun
from apps.wargaming.services import (
    REAP_REASON,
    SHADOW_TRIGGER,
    _claim,
    _store,
    claim_is_stale,
    wargame_execute,
    wargame_reap,
    wargame_start,
    worker_identity,
)
from tests.helpers import ROOT, current_database_url, processes_with

# --- sanitise_evidence and clean_text ------------------------------------------------------


def test_nan_and_infinity_are_named_and_replaced():
    cleaned, problem = sanitise_evidence({"exploited": True, "score": math.nan,
                                          "deep": [{"x": math.inf}, -math.inf]})
    assert cleaned == {"exploited": True, "score": "NaN",
                       "deep": [{"x": "Infinity"}, "-Infinity"]}
    assert "NaN at $.score" in problem and "Infinity at $.deep[0].x" in problem
    assert "-Infinity at $.deep[1]" in problem
    json.dumps(cleaned, allow_nan=False)  # storable as strict JSON


def test_nul_is_stripped_from_nested_keys_and_values_without_a_problem():
    cleaned, problem = sanitise_evidence({"exploited": False, "k\x00ey": {"in\x00ner": [
        "a\x00b", {"\x00": "\x00\x00"}]}})
    assert problem == ""
    assert cleaned == {"exploited": False, "key": {"inner": ["ab", {"": ""}]}}
    assert "\\u0000" not in json.dumps(cleaned)


def test_huge_evidence_is_a_problem_and_keeps_a_stub():
    cleaned, problem = sanitise_evidence({"exploited": True, "blob": "x" * 70_000})
    assert problem.startswith("evidence too large")
    assert cleaned["exploited"] is True and cleaned["evidence_too_large_bytes"] > 70_000
    assert len(json.dumps(cleaned)) < 200
    fits, ok = sanitise_evidence({"exploited": True, "blob": "x" * (EVIDENCE_LIMIT_BYTES - 100)})
    assert ok == "" and len(fits["blob"]) == EVIDENCE_LIMIT_BYTES - 100


def test_evidence_that_is_not_an_object_or_too_deep_is_a_problem():
    assert sanitise_evidence([1, 2])[1].startswith("evidence is not a JSON object")
    assert sanitise_evidence(None) == ({}, "")
    deep: dict = {"exploited": True}
    node = deep
    for _ in range(100):
        node["n"] = {}
        node = node["n"]
    cleaned, problem = sanitise_evidence(deep)
    assert "nested deeper" in problem
    json.dumps(cleaned)


def test_clean_text_strips_nul_replaces_surrogates_and_caps():
    assert clean_text("a\x00b", 10) == "ab"
    assert clean_text("\udcff ok", None).encode("utf-8") == b"? ok"
    capped = clean_text("y" * 1000, 100)
    assert len(capped) == 100 and capped.endswith("(truncated)")
    assert clean_text(None, 5) == ""


# --- runs that end whatever happened ----------------------------------------------------------


@pytest.fixture
def patch(db, tmp_path):
    """A real upgrade patch (PyYAML 5.3.1 → 5.4) for one APV, proposed by the services."""
    from tests.factories import pyyaml_upgrade_patch

    return pyyaml_upgrade_patch(tmp_path)


def _claimed(patch, trigger="test") -> WargameRun:
    """The state a worker leaves a run in once it has started: claimed, APVs validating."""
    run, _ = wargame_start(patch=patch, trigger=trigger)
    assert _claim(run)
    if trigger != SHADOW_TRIGGER:
        apvs_move_for_patch(patch=patch, status=APVStatus.VALIDATING,
                            before=(APVStatus.PATCH_PROPOSED, APVStatus.PENDING_REVIEW))
    run.refresh_from_db()
    return run


def _result(**phase) -> runner.RunResult:
    base = runner.PhaseResult(name="baseline", outcome="exploited", exit_code=1,
                              exploited=True, duration_s=0.1, evidence={"exploited": True},
                              output="ok", network_isolated=True)
    patched = runner.PhaseResult(name="patched", outcome="blocked", exit_code=0,
                                 exploited=False, duration_s=0.1,
                                 evidence={"exploited": False}, output="ok",
                                 network_isolated=True)
    for key, value in phase.items():
        setattr(patched, key, value)
    return runner.RunResult("patch_effective", 0.95, "exploited before the patch, blocked "
                            "after it", [base, patched], network_isolated=True,
                            duration_s=0.2, sandbox={"phase_timeout_s": 30})


def _apv_status(patch) -> str:
    return APV.objects.get(current_patch=patch).status


@pytest.mark.parametrize("evidence, named", [
    ({"exploited": False, "ratio": math.inf}, "Infinity"),
    ({"exploited": False, "ratio": math.nan}, "NaN"),
    ({"exploited": False, "blob": "z" * 100_000}, "evidence too large"),
])
def test_unstorable_evidence_ends_the_run_error_and_frees_the_apv(patch, evidence, named):
    run = _claimed(patch)
    assert _apv_status(patch) == "validating"
    run = _store(run, _result(evidence=evidence, output="out\x00put"), free_apvs=True)
    assert run.state == "finished" and run.verdict == "error" and run.confidence == 0.0
    assert named in run.reason and run.reason.startswith("patched: ")
    patched = run.phases.get(name="patched")
    assert patched.outcome == "error" and patched.output == "output"
    json.dumps(patched.evidence, allow_nan=False)
    assert _apv_status(patch) == "pending_review"


def test_a_write_the_database_refuses_still_ends_the_run(patch):
    run = _claimed(patch)
    # An exit code no INTEGER column holds: SQLite and PostgreSQL both refuse the row.
    run = _store(run, _result(exit_code=2 ** 70), free_apvs=True)
    assert run.state == "finished" and run.verdict == "error"
    assert run.reason.startswith("could not store the run: ")
    assert run.reason.split(": ")[1] in ("OverflowError", "DataError")
    assert run.phases.count() == 0
    assert _apv_status(patch) == "pending_review"


def test_an_exploit_printing_nan_and_nul_for_real_gives_error(patch, settings, tmp_path):
    pocs = tmp_path / "pocs"
    pocs.mkdir()
    (pocs / "nan_nul.py").write_text(
        "# immune-exploit: 1\n# package: pyyaml\n# advisories: PYSEC-2021-142\n"
        "import sys\n"
        "sys.stdout.write('noise \\x00 with a NUL\\n')\n"
        "print('{\"exploited\": true, \"score\": NaN, \"k\\\\u0000ey\": \"v\\\\u0000al\"}')\n"
        "sys.exit(1)\n")
    settings.WARGAME_EXPLOIT_DIRS = [str(pocs)]
    run, _ = wargame_start(patch=patch, trigger="test")
    run = wargame_execute(run=run)
    assert run.exploit.endswith("nan_nul.py")
    baseline = run.phases.get(name="baseline")
    assert run.state == "finished" and run.verdict == "error", (run.reason, baseline.output)
    assert "NaN" in run.reason  # the runner or the store names it, either way
    assert "\x00" not in baseline.output and "with a NUL" in baseline.output
    assert "\x00" not in json.dumps(baseline.evidence)
    assert _apv_status(patch) == "pending_review"


def test_a_crash_after_the_claim_ends_the_run_with_the_exception(patch, settings):
    # A misconfigured exploit folder (not a path) breaks the exploit lookup itself.
    settings.WARGAME_EXPLOIT_DIRS = [123]
    run, _ = wargame_start(patch=patch, trigger="test")
    run = wargame_execute(run=run)
    assert run.state == "finished" and run.verdict == "error"
    assert run.reason.startswith("the wargame crashed: TypeError: ")
    assert run.attempts == 1 and run.claimed_by == worker_identity()
    assert _apv_status(patch) == "pending_review"


def test_the_task_soft_time_limit_ends_the_run_timeout(patch):
    from celery.exceptions import SoftTimeLimitExceeded

    from apps.wargaming.services import _crashed
    from apps.wargaming.tasks import RUN_SOFT_TIME_LIMIT, RUN_TIME_LIMIT, run_wargame

    run = _claimed(patch)
    run = _store(run, _crashed(SoftTimeLimitExceeded()), free_apvs=True)
    assert (run.state, run.verdict) == ("finished", "timeout")
    assert _apv_status(patch) == "pending_review"
    # The limits sit between the run's budget and the reaper's cutoff.
    budget = django_settings.WARGAME_RUN_TIMEOUT_S
    assert budget < RUN_SOFT_TIME_LIMIT < RUN_TIME_LIMIT < budget + \
        django_settings.WARGAME_REAP_GRACE_S
    assert run_wargame.soft_time_limit == RUN_SOFT_TIME_LIMIT
    assert run_wargame.time_limit == RUN_TIME_LIMIT
    assert django_settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] > \
        budget + django_settings.WARGAME_REAP_GRACE_S
    assert django_settings.CELERY_BEAT_SCHEDULE["wargaming-reap"]["task"] == "wargaming.reap"


# --- the reaper -------------------------------------------------------------------------------


def _past_deadline(run: WargameRun):
    return run.started_at + timedelta(seconds=django_settings.WARGAME_RUN_TIMEOUT_S
                                      + django_settings.WARGAME_REAP_GRACE_S + 1)


def test_reaper_ends_a_lost_run_as_timeout_and_frees_its_apvs(patch):
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from apps.core.realtime import group_name
    from tests.wargaming.test_runs import _drain

    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(group_name("wargames"), channel)
    run = _claimed(patch)
    assert wargame_reap()["reaped"] == []  # within its deadline: left alone
    assert WargameRun.objects.get(pk=run.pk).state == "running"

    report = wargame_reap(now=_past_deadline(run))
    assert report["reaped"] == [run.pk] and isinstance(report["leftovers"], dict)
    run.refresh_from_db()
    assert (run.state, run.verdict, run.reason) == ("finished", "timeout", REAP_REASON)
    assert run.finished_at is not None and run.duration_s > 0
    assert _apv_status(patch) == "pending_review"
    events = async_to_sync(_drain)(layer, channel)
    assert {"run": run.pk, "state": "timeout"}.items() <= events[-1].items()

    assert wargame_reap(now=_past_deadline(run))["reaped"] == []  # idempotent
    run.refresh_from_db()
    assert run.verdict == "timeout"


def test_reaper_leaves_a_shadow_runs_apvs_alone(patch):
    run = _claimed(patch, trigger=SHADOW_TRIGGER)
    # A shadow run never moved its APVs; whatever state they are in is not its to change.
    apvs_move_for_patch(patch=patch, status=APVStatus.VALIDATING,
                        before=(APVStatus.PATCH_PROPOSED, APVStatus.PENDING_REVIEW))
    assert wargame_reap(now=_past_deadline(run))["reaped"] == [run.pk]
    assert WargameRun.objects.get(pk=run.pk).verdict == "timeout"
    assert _apv_status(patch) == "validating"


def test_reaper_requeues_a_forgotten_queued_run_once(patch, django_capture_on_commit_callbacks):
    run, _ = wargame_start(patch=patch, trigger="test")
    assert wargame_reap()["requeued"] == []  # queued a moment ago: the worker may come
    later = timezone.now() + timedelta(seconds=django_settings.WARGAME_REQUEUE_AFTER_S + 1)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert wargame_reap(now=later)["requeued"] == [run.pk]
        assert wargame_reap(now=later)["requeued"] == []
    assert len(callbacks) == 1  # run_wargame.delay(run.pk), after commit
    run.refresh_from_db()
    assert run.state == "queued" and run.requeued_at is not None


# --- redelivery -------------------------------------------------------------------------------


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_claim_staleness_rules():
    now = timezone.now()
    host = socket.gethostname()
    assert claim_is_stale(claimed_by=f"{host}:{_dead_pid()}", started_at=now, now=now)
    assert not claim_is_stale(claimed_by=f"{host}:{os.getpid()}", started_at=now, now=now)
    # Another host's process cannot be checked from here: only its age counts.
    assert not claim_is_stale(claimed_by="elsewhere:1", started_at=now, now=now)
    old = now - timedelta(seconds=django_settings.WARGAME_RUN_TIMEOUT_S
                          + django_settings.WARGAME_REAP_GRACE_S + 1)
    assert claim_is_stale(claimed_by="elsewhere:1", started_at=old, now=now)
    assert claim_is_stale(claimed_by=f"{host}:{os.getpid()}", started_at=old, now=now)


def test_a_redelivered_task_reruns_a_run_whose_worker_died(patch):
    from apps.wargaming.tasks import run_wargame

    run = _claimed(patch)
    # The worker that claimed it is gone: its pid on this host no longer exists.
    WargameRun.objects.filter(pk=run.pk).update(claimed_by=f"{socket.gethostname()}:"
                                                f"{_dead_pid()}")
    assert run_wargame.delay(run.pk).get() == "patch_effective"  # the redelivery
    run.refresh_from_db()
    assert run.state == "finished" and run.attempts == 2
    assert run.claimed_by == worker_identity()
    assert sorted(run.phases.values_list("name", flat=True)) == ["baseline", "patched"]
    assert _apv_status(patch) == "pending_review"


def test_a_redelivered_task_leaves_a_live_run_alone(patch):
    run = _claimed(patch)  # claimed by this very (live) process a moment ago
    again = wargame_execute(run=run)
    assert again.state == "running" and again.attempts == 1 and again.phases.count() == 0
    assert _apv_status(patch) == "validating"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_only_one_wins(patch):
    run, _ = wargame_start(patch=patch, trigger="test")

    def race() -> list[bool]:
        barrier, results = threading.Barrier(4), []

        def attempt():
            try:
                mine = WargameRun.objects.get(pk=run.pk)
                barrier.wait(timeout=10)
                results.append(_claim(mine))
            finally:
                connection.close()

        threads = [threading.Thread(target=attempt) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        return sorted(results)

    for _ in range(5):
        WargameRun.objects.filter(pk=run.pk).update(state="queued", claimed_by="")
        assert race() == [False, False, False, True]  # queued → one claim
        WargameRun.objects.filter(pk=run.pk).update(
            claimed_by=f"{socket.gethostname()}:{_dead_pid()}")
        assert race() == [False, False, False, True]  # stale → one re-claim
    assert WargameRun.objects.get(pk=run.pk).attempts == 10


# --- a worker SIGKILLed mid-run, then a completed re-run ---------------------------------------


def _describe(pid: int) -> str:
    try:
        status = (Path("/proc") / str(pid) / "status").read_text()
        cmdline = (Path("/proc") / str(pid) / "cmdline").read_bytes()
    except OSError:
        return f"{pid} (gone)"
    ppid = next((line.split()[1] for line in status.splitlines()
                 if line.startswith("PPid:")), "?")
    command = cmdline.replace(b"\0", b" ").decode(errors="replace")
    return f"{pid} (parent {ppid}): {command}"


def _wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (value := condition()):
            return value
        time.sleep(0.1)
    pytest.fail(f"{what} within {timeout} s")


@pytest.mark.slow
@pytest.mark.postgres  # the worker process must see the test database
@pytest.mark.django_db(transaction=True)
def test_worker_sigkilled_mid_run_then_the_redelivery_completes_it(patch, tmp_path):
    token = f"sleepy_{uuid.uuid4().hex[:12]}"
    pocs = tmp_path / "pocs"
    pocs.mkdir()
    (pocs / f"{token}.py").write_text(
        "# immune-exploit: 1\n# package: pyyaml\n# advisories: PYSEC-2021-142\n"
        "import json, time\ntime.sleep(20)\nprint(json.dumps({'exploited': False}))\n")
    run, _ = wargame_start(patch=patch, trigger="test")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(DATABASE_URL=current_database_url(), WARGAME_EXPLOIT_DIRS=str(pocs),
               DJANGO_SETTINGS_MODULE="immune.settings", LOG_LEVEL="WARNING")
    code = ("import django\ndjango.setup()\n"
            "from apps.wargaming.models import WargameRun\n"
            "from apps.wargaming.services import wargame_execute\n"
            f"wargame_execute(run=WargameRun.objects.get(pk={run.pk}))\n")
    log_path = tmp_path / "worker.log"
    with log_path.open("w") as log_file:
        worker = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env,
                                  stdout=log_file, stderr=subprocess.STDOUT)
    try:
        _wait_for(lambda: WargameRun.objects.get(pk=run.pk).state == "running", 30,
                  f"the worker did not claim the run:\n{log_path.read_text()}")
        _wait_for(lambda: processes_with(token, exploit_only=True), 60,
                  f"the exploit did not start:\n{log_path.read_text()}")
        assert _apv_status(patch) == "validating"
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()

    deadline = time.monotonic() + 5
    while (survivors := processes_with(token)) and time.monotonic() < deadline:
        time.sleep(0.1)
    described = [_describe(pid) for pid in survivors]
    for pid in survivors:  # never leave them behind, but report them
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not survivors, f"exploit processes outlived their worker: {described}"

    run.refresh_from_db()
    assert run.state == "running" and run.claimed_by == f"{socket.gethostname()}:{worker.pid}"
    assert claim_is_stale(claimed_by=run.claimed_by, started_at=run.started_at)
    # The redelivery (here, in this process, with the library's real PoC) runs it again.
    again = wargame_execute(run=WargameRun.objects.get(pk=run.pk))
    assert again.state == "finished" and again.verdict == "patch_effective", again.reason
    assert again.attempts == 2 and again.claimed_by == worker_identity()
    assert _apv_status(patch) == "pending_review"
