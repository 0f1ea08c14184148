"""Benchmark: live-update latency of ``decision.made`` to 200 WebSocket clients on Redis.

    .venv/bin/python benchmarks/ws_decision_latency.py [--clients 200] [--decisions 30]

Drops and recreates a dedicated PostgreSQL database (``immune_bench_ws``; override with
``BENCH_WS_DATABASE_URL``), migrates it, loads the demo without wargames (62 APVs awaiting
review) and creates a reviewer with a session. Then starts one daphne (or, with
``--server uvicorn``, one uvicorn) process serving ``immune.asgi:application`` on
channels-redis (``BENCH_REDIS_URL``, default
``redis://127.0.0.1:6379/0``), opens ``--clients`` WebSocket connections from a separate
client process (so receiving does not share an interpreter lock with the decisions), each
subscribed to ``decisions``, and records the decisions here, one every ``--interval``
seconds, each on a different pending APV.

Latency = the client's ``time.time()`` on receiving ``decision.made`` (matched on
``decision_id`` and ``apv``) minus the commit time, taken by a ``transaction.on_commit``
callback registered before ``decision_record`` inside an outer ``transaction.atomic()``:
it runs right after COMMIT, before the callbacks that publish the events. All processes
run on one machine, so their clocks are the same. Aim (issue 5): p95 < 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from _setup import ROOT, django_on_bench_database, machine

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/immune_bench_ws"
ORIGIN = "http://127.0.0.1"


# --- client process -------------------------------------------------------------------------

async def run_clients(url: str, cookie: str, count: int) -> None:
    """Open ``count`` subscribed connections, print READY, collect ``decision.made`` receipts
    until a line arrives on stdin, then print them as JSON."""
    from websockets.asyncio.client import connect

    receipts: list[tuple[int, int, str, float]] = []  # client, decision_id, apv, time
    opening = asyncio.Semaphore(20)

    async def open_one():
        async with opening:
            ws = await connect(url, origin=ORIGIN, additional_headers={"Cookie": cookie},
                               proxy=None, open_timeout=30, ping_interval=None)
            ack = json.loads(await ws.recv())
            if ack.get("type") != "connection_ack":
                raise RuntimeError(f"expected connection_ack, got {ack}")
            await ws.send(json.dumps({"type": "subscribe", "channels": ["decisions"]}))
            subscribed = json.loads(await ws.recv())
            if subscribed.get("type") != "subscribed":
                raise RuntimeError(f"expected subscribed, got {subscribed}")
            return ws

    async def listen(index: int, ws) -> None:
        async for raw in ws:
            received = time.time()
            message = json.loads(raw)
            if message.get("type") == "decision.made":
                data = message["data"]
                receipts.append((index, data.get("decision_id"), data.get("apv"), received))

    connections = await asyncio.gather(*(open_one() for _ in range(count)))
    listeners = [asyncio.create_task(listen(i, ws)) for i, ws in enumerate(connections)]
    print(f"READY {len(connections)}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for task in listeners:
        task.cancel()
    await asyncio.gather(*listeners, return_exceptions=True)
    await asyncio.gather(*(ws.close() for ws in connections), return_exceptions=True)
    print(json.dumps({"receipts": receipts}), flush=True)


# --- benchmark process ------------------------------------------------------------------------

def recreate_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    admin_url = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def wait_until_live(server: subprocess.Popen, port: int, log: Path, timeout=30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"the server exited with {server.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"the server did not answer /health/live in {timeout} s:\n{log.read_text()}")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux /proc), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def next_target(decision: str):
    """A pending APV for ``decision``: escalate (a patch decision, applied to every pending
    APV of the patch) takes the smallest patch group, false_positive the largest, so 55
    demo APVs last for the run."""
    from apps.reviews.models import APV

    groups: dict[int, list] = {}
    for apv in (APV.objects.filter(status="pending_review").select_related("current_patch")
                .order_by("code")):
        groups.setdefault(apv.current_patch_id, []).append(apv)
    if not groups:
        return None
    pick = min if decision == "escalate" else max
    return pick(groups.values(), key=len)[0]


def record_decisions(user, count: int, interval: float) -> list[dict]:
    from django.db import transaction

    from apps.decisions.services import decision_record

    records = []
    for i in range(count):
        decision = "escalate" if i % 10 == 5 else "false_positive"
        apv = next_target(decision)
        if apv is None:
            print(f"no pending APV left after {i} decisions", file=sys.stderr)
            break
        stamp: dict[str, float] = {}
        with transaction.atomic():
            # Registered first, so it runs right after COMMIT and before the publishers.
            transaction.on_commit(lambda stamp=stamp: stamp.setdefault("commit", time.time()))
            result = decision_record(
                apv_code=apv.code, reviewer=user, decision=decision,
                justification="Benchmark decision: live-update latency.",
                patch_revision=apv.current_patch.revision if apv.current_patch else None,
            )
        published = time.time()  # every on_commit callback (the group_sends) has returned
        records.append({"decision_id": result.decision.pk, "apv": apv.code,
                        "decision": decision, "commit": stamp["commit"],
                        "published": published})
        time.sleep(interval)
    return records


def versions() -> tuple[str, str]:
    import redis
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        postgres = cursor.fetchone()[0]
    info = redis.Redis.from_url(os.environ["REDIS_URL"]).info("server")
    return f"PostgreSQL {postgres}", f"Redis {info['redis_version']}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--server", choices=["daphne", "uvicorn"], default="daphne",
                        help="the ASGI server: daphne, or uvicorn with uvloop, httptools and "
                             "websockets as production runs it (requirements/prod.txt)")
    parser.add_argument("--decisions", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=1,
                        help="decisions recorded first and left out of the figures")
    parser.add_argument("--interval", type=float, default=0.5,
                        help="seconds between decisions")
    parser.add_argument("--grace", type=float, default=3.0,
                        help="seconds to wait after the last decision for deliveries")
    parser.add_argument("--client-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client_worker:
        asyncio.run(run_clients(args.url, os.environ["BENCH_WS_COOKIE"], args.clients))
        return

    url = os.environ.get("BENCH_WS_DATABASE_URL", DEFAULT_URL)
    recreate_database(url)
    data_dir = Path(tempfile.mkdtemp(prefix="immune-bench-ws-"))
    os.environ.update(
        BENCH_DATABASE_URL=url, IMMUNE_DATA_DIR=str(data_dir),
        REDIS_URL=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
        LOG_LEVEL="WARNING", DJANGO_SETTINGS_MODULE="immune.settings",
    )
    # Own namespaces on the shared Redis: test runs and dev servers neither see our events
    # nor send theirs to our clients.
    os.environ.setdefault("CHANNEL_LAYER_PREFIX", "immune-bench-ws")
    os.environ.setdefault("CACHE_KEY_PREFIX", "immune-cache-bench-ws")
    django_on_bench_database()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    call_command("demo", "--no-wargame", stdout=io.StringIO())
    call_command("create_reviewer", "bench-ws", stdout=io.StringIO())
    user = get_user_model().objects.get(username="bench-ws")
    client = Client()
    client.force_login(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    pg_version, redis_version = versions()

    port = free_port()
    server_log = data_dir / f"{args.server}.log"
    env = {**os.environ, "DATABASE_URL": url}
    argv = ([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
             "immune.asgi:application"] if args.server == "daphne" else
            [sys.executable, "-m", "uvicorn", "immune.asgi:application", "--host", "127.0.0.1",
             "--port", str(port), "--loop", "uvloop", "--http", "httptools", "--ws",
             "websockets", "--log-level", "warning", "--no-access-log"])
    with server_log.open("w") as log:
        server = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log,
                                  stderr=subprocess.STDOUT)
    clients = None
    try:
        wait_until_live(server, port, server_log)
        clients = subprocess.Popen(
            [sys.executable, __file__, "--client-worker", "--clients", str(args.clients),
             "--url", f"ws://127.0.0.1:{port}/ws/reviews/"],
            cwd=ROOT, env={**env, "BENCH_WS_COOKIE": cookie},
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        ready = clients.stdout.readline()
        if not ready.startswith("READY"):
            sys.exit(f"client process failed ({ready!r}); server log:\n{server_log.read_text()}")
        connected = int(ready.split()[1])
        time.sleep(0.5)
        pids = {"server": server.pid, "clients": clients.pid, "benchmark": os.getpid()}
        load_before = round(os.getloadavg()[0], 2)
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        started = time.monotonic()
        records = record_decisions(user, args.warmup + args.decisions, args.interval)
        time.sleep(args.grace)
        wall = time.monotonic() - started
        cpu_after = {name: cpu_seconds(pid) for name, pid in pids.items()}
        output, _ = clients.communicate("STOP\n", timeout=60)
        receipts = json.loads(output)["receipts"]
    finally:
        if clients is not None and clients.poll() is None:
            clients.kill()
            clients.wait()
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(data_dir, ignore_errors=True)

    measured = records[args.warmup:]
    by_id = {(r["decision_id"], r["apv"]): r for r in measured}
    latencies: list[float] = []
    per_decision: dict[int, list[float]] = {}
    seen: set[tuple[int, int]] = set()
    for index, decision_id, apv, received in receipts:
        record = by_id.get((decision_id, apv))
        if record is None or (index, decision_id) in seen:
            continue  # the warm-up, another run's event on the shared Redis, or a duplicate
        seen.add((index, decision_id))
        latency = (received - record["commit"]) * 1000
        latencies.append(latency)
        per_decision.setdefault(decision_id, []).append(latency)
    firsts = [min(v) for v in per_decision.values()]
    lasts = [max(v) for v in per_decision.values()]
    expected = connected * len(measured)
    publish = [(r["published"] - r["commit"]) * 1000 for r in measured]

    def ms(value: float) -> float:
        return round(value, 1)

    print(json.dumps({
        "benchmark": "ws_decision_latency",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(), "database": pg_version, "channel_layer": redis_version,
        "load_average_1m": {"before": load_before, "after": round(os.getloadavg()[0], 2)},
        "server": f"1 {args.server} process", "clients": connected, "decisions": len(measured),
        "warmup_decisions": min(args.warmup, len(records)), "interval_s": args.interval,
        "deliveries": len(latencies), "expected_deliveries": expected,
        "missing": expected - len(latencies),
        "latency_ms": {
            "p50": ms(percentile(latencies, 50)), "p95": ms(percentile(latencies, 95)),
            "p99": ms(percentile(latencies, 99)), "max": ms(max(latencies)),
            "min": ms(min(latencies)), "mean": ms(statistics.fmean(latencies)),
        } if latencies else None,
        "per_decision_ms": {
            "first_client_median": ms(statistics.median(firsts)),
            "last_client_median": ms(statistics.median(lasts)),
        } if per_decision else None,
        "publish_ms": {"median": ms(statistics.median(publish)), "max": ms(max(publish))}
        if publish else None,
        "cpu_s_during_decisions": {
            name: round(cpu_after[name] - cpu_before[name], 2)
            for name in pids if cpu_after[name] is not None and cpu_before[name] is not None
        } | {"wall": round(wall, 2)},
        "timestamps": "commit: on_commit callback registered before decision_record's; "
                      "receive: client time.time() on the decision.made frame",
    }, indent=2))


if __name__ == "__main__":
    main()
