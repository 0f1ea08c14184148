"""The production profile wargames for real, and survives a worker killed mid-wargame.

    .venv/bin/python benchmarks/wargame_production.py

A fresh PostgreSQL database and data folder; ``DJANGO_ENV=production`` with Redis as cache,
channel layer and broker; uvicorn (2 workers) and a Celery worker as separate processes.

1. ``demo --no-wargame`` loads the demo's patches; a reviewer's API token is created.
2. ``GET /health/components`` reports the sandbox the worker published.
3. ``POST /api/v1/wargaming/validate`` for the CWE-89 effective code patch and for the
   PyYAML upgrade; both runs are polled through ``GET /api/v1/wargaming/runs/{id}/`` until
   they finish (verdict, sandbox record, wall time).
4. A wargame with a slow exploit is started, and the worker's pool process running it is
   SIGKILLed while the exploit runs (what the kernel's OOM killer does): no sandbox process
   may survive it; the worker requeues the task at once (``acks_late`` and
   ``reject_on_worker_lost``) and the redelivered task, finding the claim's process gone,
   runs the wargame again to a verdict.
Prints a JSON summary last.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from _setup import ROOT, machine

PYTHON = str(ROOT / ".venv" / "bin" / "python")
DB = "immune_prod_wargame"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(data: Path, extra_exploits: Path) -> dict[str, str]:
    return {**os.environ, "DJANGO_ENV": "production", "SECRET_KEY": secrets.token_urlsafe(48),
            "ALLOWED_HOSTS": "127.0.0.1,localhost", "SECURE_SSL_REDIRECT": "false",
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB}",
            # a Redis database of its own: no other process's worker takes these tasks
            "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"),
            "IMMUNE_DATA_DIR": str(data), "WARGAME_ENV_DIR": str(data / "envs"),
            "WARGAME_EXPLOIT_DIRS": str(extra_exploits), "WARGAME_AUTO": "false",
            "CHANNEL_LAYER_PREFIX": f"immune-prodcheck-{os.getpid()}",
            "CACHE_KEY_PREFIX": f"immune-prodcheck-{os.getpid()}", "LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT)}


def _manage(env, *args: str, input_text: str | None = None) -> str:
    done = subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, text=True,
                          capture_output=True, input=input_text, timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def _api(base: str, token: str, path: str, body: dict | None = None):
    request = urllib.request.Request(  # noqa: S310 (loopback)
        base + path, data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
        method="POST" if body is not None else "GET")
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        return json.loads(response.read())


def _wait_run(base: str, token: str, run: int, timeout_s: float = 300) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        detail = _api(base, token, f"/api/v1/wargaming/runs/{run}/")
        if detail["state"] == "finished":
            return detail
        time.sleep(0.5)
    raise SystemExit(f"run {run} did not finish in {timeout_s} s")


def _procs_with(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if text in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


STARTED: list[subprocess.Popen] = []


def _worker(env) -> subprocess.Popen:
    return _started(subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "celery"), "-A", "immune", "worker", "-l", "warning",
         "--concurrency", "1", "--pool", "prefork"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True))


def _started(process: subprocess.Popen) -> subprocess.Popen:
    STARTED.append(process)
    return process


def main() -> None:
    import psycopg

    with psycopg.connect("postgres://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        c.execute(f'CREATE DATABASE "{DB}"')
    data = Path(tempfile.mkdtemp(prefix="immune-prodcheck-"))
    data.chmod(0o755)
    exploits = data / "exploits"
    exploits.mkdir()
    slow_token = secrets.token_hex(8)
    # A slow PoC for the PyYAML advisory, ahead of the built-in one (user folders win).
    # (the token is in its file name, so its process is found by its command line)
    (exploits / f"slow_pyyaml_{slow_token}.py").write_text(
        "# immune-exploit: 1\n# package: pyyaml\n# advisories: PYSEC-2021-142\n"
        f"import json, sys, time\n# {slow_token}\ntime.sleep(15)\n"
        "print(json.dumps({'exploited': True}))\nsys.exit(1)\n")
    env = _env(data, Path("/nonexistent"))
    summary: dict = {"benchmark": "wargame_production", "machine": machine(),
                     "date": datetime.now(UTC).isoformat(timespec="seconds")}
    _manage(env, "migrate", "--noinput")
    _manage(env, "demo", "--no-wargame")
    _manage(env, "create_reviewer", "alice", "--password-stdin",
            input_text="correct-horse-battery-staple-42\n")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    _started(subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "uvicorn"), "immune.asgi:application", "--host",
         "127.0.0.1", "--port", str(port), "--workers", "2"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True))
    worker = _worker(env)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/health/live", timeout=1)  # noqa: S310
                break
            except OSError:
                time.sleep(0.2)
        token = json.loads(urllib.request.urlopen(urllib.request.Request(  # noqa: S310
            base + "/api/v1/auth/token/", method="POST",
            data=json.dumps({"username": "alice",
                             "password": "correct-horse-battery-staple-42"}).encode(),
            headers={"Content-Type": "application/json"}), timeout=30).read())["token"]
        time.sleep(3)  # the worker publishes its sandbox when it is ready
        with urllib.request.urlopen(base + "/health/components", timeout=30) as r:  # noqa: S310
            summary["health_sandbox"] = json.loads(r.read())["components"]["sandbox"]
        patches = _patches(env)
        for label, patch in patches.items():
            started = time.monotonic()
            run = _api(base, token, "/api/v1/wargaming/validate", {"patch": patch})["run"]
            detail = _wait_run(base, token, run)
            summary[label] = {"verdict": detail["verdict"], "wall_s": round(
                time.monotonic() - started, 2), "network_isolated": detail["network_isolated"],
                "sandbox": {k: detail["sandbox"].get(k) for k in (
                    "sandbox", "cgroup", "user", "memory_bytes", "layout")}}
        summary["worker_killed"] = _kill_mid_run(env, base, token, patches, slow_token,
                                                 exploits, worker)
    finally:
        for process in STARTED:
            with_suppress_kill(process)
    import shutil

    shutil.rmtree(data, ignore_errors=True)
    print(json.dumps(summary, indent=2, default=str))


def with_suppress_kill(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def _patches(env) -> dict[str, int]:
    code = ("from apps.reviews.models import Patch; import json; print(json.dumps({"
            "'http_cwe89_effective': Patch.objects.filter(project__name='demo', "
            "strategy='code_patch', apvs__advisory__osv_id='IMMUNE-DEMO-CWE-89', "
            "title__contains='(effective').values_list('pk', flat=True).first(), "
            "'package_pyyaml_upgrade': Patch.objects.filter(project__name='demo', "
            "package='pyyaml', strategy='dependency_upgrade').values_list('pk', flat=True)"
            ".first()}))")
    return json.loads(_manage(env, "shell", "-c", code).strip().splitlines()[-1])


def _kill_mid_run(env, base, token, patches, slow_token, exploits, worker) -> dict:
    """The slow PoC is picked up once the worker sees the exploit folder: restart the worker
    with it, start a new revision's wargame, SIGKILL the worker while the PoC runs."""
    with_suppress_kill(worker)
    env = {**env, "WARGAME_EXPLOIT_DIRS": str(exploits)}
    worker = _worker(env)
    code = (f"from apps.reviews.models import Patch; from apps.wargaming.models import "
            f"WargameRun; WargameRun.objects.filter(patch_id={patches['package_pyyaml_upgrade']}"
            ").delete()")
    _manage(env, "shell", "-c", code)
    run = _api(base, token, "/api/v1/wargaming/validate",
               {"patch": patches["package_pyyaml_upgrade"]})["run"]
    deadline = time.monotonic() + 120
    while not _procs_with(slow_token) and time.monotonic() < deadline:
        time.sleep(0.2)
    sandboxed = _procs_with(slow_token)
    if not sandboxed:
        raise SystemExit("the slow exploit never started: "
                         f"{_api(base, token, f'/api/v1/wargaming/runs/{run}/')}")
    children = [int(p) for p in Path(f"/proc/{worker.pid}/task/{worker.pid}/children")
                .read_text().split()]
    victim = next(pid for pid in children if _has_descendant(pid, sandboxed))
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    time.sleep(1)
    survivors = [pid for pid in sandboxed if _running(pid)]
    # the redelivered attempt starts the same slow PoC again: wait for the verdict
    detail = _wait_run(base, token, run, timeout_s=300)
    return {"exploit_processes_before_kill": len(sandboxed),
            "first_attempt_survivors_1s_after_kill": len(survivors),
            "rerun_verdict": detail["verdict"], "attempts": detail.get("attempts"),
            "kill_to_verdict_s": round(time.monotonic() - killed_at, 2),
            "worker_pid": worker.pid}


def _running(pid: int) -> bool:
    """Alive and not a zombie (a killed orphan waits for init to reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _has_descendant(pid: int, targets: list[int]) -> bool:
    for target in targets:
        current = target
        while current > 1:
            if current == pid:
                return True
            try:
                current = int(Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1]
                              .split()[1])
            except (OSError, ValueError, IndexError):
                break
    return False


if __name__ == "__main__":
    sys.exit(main())
