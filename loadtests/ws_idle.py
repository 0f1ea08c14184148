"""500 idle WebSocket clients held 10 minutes, then decisions must reach every one of them.

    .venv/bin/python loadtests/ws_idle.py [--clients 500] [--hold 600] [--decisions 10]

The production stack of ``loadtests/run.py`` (same database and Redis defaults, same
environment; uvicorn with ``LOAD_WEB_WORKERS`` = 2 workers and a Celery worker), seeded by
``loadtests/seed.py``. A separate client process opens ``--clients`` connections to
``/ws/reviews/`` with the seeded reviewers' sessions, subscribes each to ``decisions`` and
then sends nothing at all for ``--hold`` seconds (no application pings, no WebSocket
pings): idle as a forgotten browser tab is. Connections the server closes meanwhile are
counted. Then this process records ``--decisions`` ``false_positive`` decisions with
``decision_record`` (one every ``--interval`` s, on generated pending APVs), the first one
right after the hold.

Latency = the client's ``time.time()`` on receiving ``decision.made`` minus the commit
time (a ``transaction.on_commit`` callback registered before ``decision_record``'s own,
as in ``benchmarks/ws_decision_latency.py``); one machine, one clock. Aim (issue 12):
every client receives the decision, p95 < 50 ms. Prints a JSON summary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as stack  # noqa: E402  (loadtests/run.py: the stack's helpers)

ROOT = stack.ROOT


# --- client process -------------------------------------------------------------------------

async def clients_main(url: str, origin: str, cookies: list[str], count: int) -> None:
    from websockets.asyncio.client import connect

    receipts: list[tuple[int, int, float]] = []  # client, decision_id, time
    closed: dict[int, float] = {}
    opening = asyncio.Semaphore(20)

    async def open_one(index: int):
        async with opening:
            ws = await connect(url, origin=origin, proxy=None, open_timeout=60,
                               additional_headers={"Cookie": cookies[index % len(cookies)]},
                               ping_interval=None, close_timeout=2)
            if json.loads(await ws.recv()).get("type") != "connection_ack":
                raise RuntimeError("no connection_ack")
            await ws.send(json.dumps({"type": "subscribe", "channels": ["decisions"]}))
            if json.loads(await ws.recv()).get("type") != "subscribed":
                raise RuntimeError("not subscribed")
            return ws

    async def listen(index: int, ws) -> None:
        try:
            async for raw in ws:
                received = time.time()
                message = json.loads(raw)
                if message.get("type") == "decision.made":
                    receipts.append((index, message["data"].get("decision_id"), received))
        finally:
            closed.setdefault(index, time.time())

    opened_at = time.time()
    connections = await asyncio.gather(*(open_one(i) for i in range(count)))
    tasks = [asyncio.create_task(listen(i, ws)) for i, ws in enumerate(connections)]
    print(json.dumps({"ready": len(connections), "open_s": round(time.time() - opened_at, 1)}),
          flush=True)
    loop = asyncio.get_running_loop()
    while True:  # commands on stdin: STATUS (how many are still open) or STOP
        line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        if line == "STATUS":
            print(json.dumps({"open": count - len(closed), "closed": len(closed)}), flush=True)
        elif line in ("STOP", ""):
            break
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.gather(*(ws.close() for ws in connections), return_exceptions=True)
    print(json.dumps({"receipts": receipts,
                      "closed_before_stop": {str(k): v for k, v in closed.items()}}), flush=True)


# --- benchmark process ------------------------------------------------------------------------

def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def decide(count: int, interval: float) -> list[dict]:
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from apps.decisions.services import decision_record
    from apps.reviews.models import APV, APVStatus

    user = get_user_model().objects.get(username="load-writer-099")
    targets = list(APV.objects.filter(status=APVStatus.PENDING_REVIEW,
                                      project__name__startswith="loadgen-")
                   .select_related("current_patch").order_by("-code")[:count])
    records = []
    for apv in targets:
        stamp: dict[str, float] = {}
        with transaction.atomic():
            transaction.on_commit(lambda stamp=stamp: stamp.setdefault("commit", time.time()))
            result = decision_record(
                apv_code=apv.code, reviewer=user, decision="false_positive",
                justification="Load test: idle WebSocket fan-out.",
                patch_revision=apv.current_patch.revision if apv.current_patch else None)
        records.append({"decision_id": result.decision.pk, "apv": apv.code,
                        "commit": stamp["commit"], "published": time.time()})
        time.sleep(interval)
    return records


def main() -> None:  # noqa: PLR0915 (one linear script)
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--hold", type=float, default=600.0, help="idle seconds")
    parser.add_argument("--decisions", type=int, default=10)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--grace", type=float, default=3.0)
    parser.add_argument("--client-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--origin", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client_worker:
        asyncio.run(clients_main(args.url, args.origin,
                                 json.loads(os.environ["LOAD_WS_COOKIES"]), args.clients))
        return

    db_url = stack.setting("LOAD_DATABASE_URL", stack.setting(
        "DATABASE_URL", "postgres://postgres@127.0.0.1:5432/immune_load"))
    redis_url = stack.setting("LOAD_REDIS_URL",
                              stack.setting("REDIS_URL", "redis://127.0.0.1:6379/12"))
    db_name = db_url.rsplit("/", 1)[1].split("?")[0]
    state = stack.REPORTS / "state" / db_name
    report = stack.REPORTS / (datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-ws-idle")
    report.mkdir(parents=True, exist_ok=True)
    state.mkdir(parents=True, exist_ok=True)
    credentials = state / "credentials.json"
    env = stack.production_env(db_url=db_url, redis_url=redis_url, state=state)
    workers = stack.setting("LOAD_WEB_WORKERS", "2")
    summary: dict = {"benchmark": "loadtests/ws_idle.py",
                     "date": datetime.now(UTC).isoformat(timespec="seconds"),
                     "machine": f"{os.uname().machine}, {os.cpu_count()} CPUs",
                     "web": f"uvicorn, {workers} workers", "clients": args.clients,
                     "hold_s": args.hold, "load_average_at_start": stack.load_average()}
    stack.ensure_database(db_url)
    stack.prepare(env, credentials, report / "setup.log")
    os.environ.update({k: v for k, v in env.items() if k != "LOAD_WRITES_FILE"})
    import django

    sys.path.insert(0, str(ROOT))
    django.setup()
    port = stack.free_port()
    clients = None
    try:
        stack.start_stack(env, port, workers, report)
        cookie_name = json.loads(credentials.read_text())["session_cookie_name"]
        cookies = [f"{cookie_name}={s}"
                   for s in json.loads(credentials.read_text())["ws_sessions"]]
        clients = subprocess.Popen(
            [sys.executable, __file__, "--client-worker", "--clients", str(args.clients),
             "--url", f"ws://127.0.0.1:{port}/ws/reviews/", "--origin",
             f"http://127.0.0.1:{port}"],
            cwd=ROOT, env={**env, "LOAD_WS_COOKIES": json.dumps(cookies)},
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)
        stack.STARTED.append(clients)
        ready = json.loads(clients.stdout.readline())
        summary["connected"] = ready["ready"]
        summary["open_s"] = ready["open_s"]
        print(f"{ready['ready']} clients connected in {ready['open_s']} s; idle for "
              f"{args.hold:.0f} s", flush=True)
        time.sleep(args.hold)
        clients.stdin.write("STATUS\n")
        clients.stdin.flush()
        summary["after_hold"] = json.loads(clients.stdout.readline())
        summary["load_average_before_decisions"] = stack.load_average()
        records = decide(args.decisions, args.interval)
        time.sleep(args.grace)
        clients.stdin.write("STOP\n")
        clients.stdin.flush()
        result = json.loads(clients.stdout.read().strip().splitlines()[-1])
    finally:
        stack.stop_all()
    by_id = {r["decision_id"]: r for r in records}
    latencies: dict[int, list[float]] = {r["decision_id"]: [] for r in records}
    seen = set()
    for index, decision_id, received in result["receipts"]:
        if decision_id in by_id and (index, decision_id) not in seen:
            seen.add((index, decision_id))
            latencies[decision_id].append((received - by_id[decision_id]["commit"]) * 1000)

    def figures(values: list[float]) -> dict | None:
        if not values:
            return None
        return {"deliveries": len(values), "p50_ms": round(percentile(values, 50), 1),
                "p95_ms": round(percentile(values, 95), 1),
                "p99_ms": round(percentile(values, 99), 1), "max_ms": round(max(values), 1),
                "mean_ms": round(statistics.fmean(values), 1)}

    first = records[0]["decision_id"] if records else None
    every = [v for values in latencies.values() for v in values]
    summary.update({
        "decisions": len(records),
        "first_decision_after_hold": figures(latencies.get(first, [])),
        "all_decisions": figures(every),
        "missing_deliveries": summary["connected"] * len(records) - len(every),
        "closed_during_hold": summary["after_hold"]["closed"],
        "publish_ms_median": round(statistics.median(
            [(r["published"] - r["commit"]) * 1000 for r in records]), 1) if records else None,
        "load_average_at_end": stack.load_average(),
    })
    text = json.dumps(summary, indent=2)
    (report / "summary.json").write_text(text)
    print(text)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        stack.stop_all()
        sys.exit(130)
