"""``make load``: the production stack on loopback, seeded, under Locust; then stopped.

    .venv/bin/python loadtests/run.py            # what `make load` runs
    STRESS=1 .venv/bin/python loadtests/run.py   # `make load STRESS=1`: find the breaking point

1. Creates the database if it is missing (``LOAD_DATABASE_URL``, else ``DATABASE_URL``,
   else ``postgres://postgres@127.0.0.1:5432/immune_load``) and uses Redis at
   ``LOAD_REDIS_URL``/``REDIS_URL`` (default ``redis://127.0.0.1:6379/12``) under key
   prefixes of its own. Neither service is started, stopped or flushed here.
2. ``DJANGO_ENV=production`` with a fresh ``SECRET_KEY``, ``ALLOWED_HOSTS`` for loopback,
   ``SECURE_SSL_REDIRECT=false`` (no TLS proxy in front), ``WARGAME_AUTO=false`` (the demo's
   patches are not wargamed during the measurement) and ``LOGIN_RATE_LIMIT`` raised
   (``LOAD_LOGIN_RATE_LIMIT``, default 100000/m: every console user logs in from 127.0.0.1).
3. ``migrate``, ``collectstatic``, ``loadtests/seed.py`` (demo plus ≥ 5,000 generated APVs,
   accounts, credentials in ``loadtests/reports/state/<database>/``).
4. uvicorn with ``LOAD_WEB_WORKERS`` (2) workers serving ``immune.asgi:application`` and a
   Celery worker (concurrency 1), each in its own process group.
5. Locust headless, one run per phase of ``LOAD_CLASSES`` (``;`` between phases, ``,`` or
   space between the classes of one phase, ``@N`` after a phase for its own user count),
   each ``LOAD_DURATION`` long with ``LOAD_USERS`` users spawned at ``LOAD_SPAWN_RATE``
   and ``LOAD_WAIT`` think time; statistics reset once every user is spawned. CSV and HTML
   reports per phase in ``loadtests/reports/<UTC time>/``. With ``STRESS=1`` one run with
   ``loadtests/stress_shape.py`` instead (classes: ``LOAD_CLASSES``, default ApiReader).
6. After a phase with decision writers: every 2xx decision is looked up in the database
   (lost, duplicated, or written without a 2xx).
7. ``summary.json`` and ``summary.md`` in the report folder, the summary on stdout; every
   process started here is stopped (also on Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import platform
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
REPORTS = ROOT / "loadtests" / "reports"
STARTED: list[subprocess.Popen] = []


def setting(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ensure_database(url: str) -> str:
    import psycopg

    name = url.rsplit("/", 1)[1].split("?")[0]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
            return f"created {name}"
    return f"using {name}"


def run(env: dict, *argv: str, log: Path, timeout: float = 1800) -> None:
    with log.open("a") as out:
        out.write(f"$ {shlex.join(argv)}\n")
        out.flush()
        done = subprocess.run(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                              timeout=timeout, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{shlex.join(argv)} failed ({done.returncode}); see {log}:\n"
                         + "\n".join(log.read_text().splitlines()[-30:]))


def start(env: dict, *argv: str, log: Path) -> subprocess.Popen:
    out = log.open("w")
    process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                               start_new_session=True)
    STARTED.append(process)
    return process


def stop_all() -> None:
    for process in reversed(STARTED):
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
    deadline = time.monotonic() + 20
    for process in reversed(STARTED):
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        # the whole group: uvicorn's and Celery's worker processes too
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    STARTED.clear()


def wait_ready(base: str, server: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the web server exited ({server.returncode}):\n{log.read_text()}")
        try:
            with urllib.request.urlopen(base + "/health/ready", timeout=3) as response:  # noqa: S310
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{base}/health/ready did not answer 200 in {timeout} s; see {log}")


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU of every live process in a process group (Linux /proc)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def parse_phases(spec: str, users: int) -> list[tuple[list[str], int]]:
    phases = []
    for part in (p.strip() for p in spec.split(";")):
        if not part:
            continue
        count = users
        if "@" in part:
            part, _, number = part.partition("@")
            count = int(number)
        phases.append(([c for c in part.replace(",", " ").split() if c], count))
    return phases


def read_stats(prefix: Path) -> list[dict]:
    path = prefix.with_name(prefix.name + "_stats.csv")
    if not path.is_file():
        return []
    rows = []
    with path.open() as handle:
        for row in csv.DictReader(handle):
            def num(key: str, row=row) -> float | None:
                value = row.get(key)
                try:
                    return float(value) if value not in (None, "", "N/A") else None
                except ValueError:
                    return None

            requests, failures = int(num("Request Count") or 0), int(num("Failure Count") or 0)
            rows.append({"type": row["Type"], "name": row["Name"], "requests": requests,
                         "failures": failures,
                         "error_ratio": round(failures / requests, 4) if requests else 0.0,
                         "rps": num("Requests/s"), "p50_ms": num("50%"), "p95_ms": num("95%"),
                         "p99_ms": num("99%"), "max_ms": num("Max Response Time")})
    return rows


def check_decisions(db_url: str, writes_file: Path, since: datetime) -> dict:
    """Every 2xx decision must be one row; no row without a 2xx."""
    import psycopg

    tally = json.loads(writes_file.read_text())
    created = tally["created"]
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT a.code, count(*) FROM decisions_decision d "
            "JOIN reviews_apv a ON a.id = d.apv_id JOIN auth_user u ON u.id = d.reviewer_id "
            "WHERE u.username LIKE 'load-writer-%%' AND d.decided_at >= %s GROUP BY a.code",
            [since]).fetchall()
    in_db = dict(rows)
    extra = set(in_db) - set(created)
    failed = {code for code, _ in tally["failed"]}
    return {
        "answered_2xx": len(created), "replays_answered_as_replays": len(tally["replayed"]),
        "failed_requests": len(tally["failed"]), "failed_examples": tally["failed"][:5],
        "decision_rows": sum(in_db.values()), "apvs_with_rows": len(in_db),
        "lost": sorted(set(created) - set(in_db)),
        "duplicated": sorted(code for code, n in in_db.items() if n > 1),
        # a request still in flight when Locust stopped: committed, its answer never read
        "in_flight_at_stop": sorted((extra - failed) & set(tally["sent"])),
        "rows_for_failed_requests": sorted(extra & failed),
        "rows_for_apvs_never_sent": sorted(extra - set(tally["sent"])),
        "duplicate_2xx": len(created) - len(set(created)),
    }


def pending_targets(db_url: str, target: Path) -> int:
    """The generated APVs still awaiting review (code, patch revision), shuffled, for the
    next phase's decision writers; returns how many."""
    import psycopg

    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT a.code, p.revision FROM reviews_apv a JOIN inventory_project j "
            "ON j.id = a.project_id LEFT JOIN reviews_patch p ON p.id = a.current_patch_id "
            "WHERE a.status = 'pending_review' AND j.name LIKE 'loadgen-%%' "
            "ORDER BY random()").fetchall()
    target.write_text(json.dumps([list(row) for row in rows]))
    return len(rows)


def production_env(*, db_url: str, redis_url: str, state: Path) -> dict[str, str]:
    """The environment of every process of one load run (a fresh SECRET_KEY each time)."""
    db_name = db_url.rsplit("/", 1)[1].split("?")[0]
    env = {
        **os.environ, "DJANGO_ENV": "production", "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1,localhost", "SECURE_SSL_REDIRECT": "false",
        "DATABASE_URL": db_url, "REDIS_URL": redis_url,
        "CHANNEL_LAYER_PREFIX": f"immune-load-{db_name}",
        "CACHE_KEY_PREFIX": f"immune-load-cache-{db_name}",
        "IMMUNE_DATA_DIR": str(state / "data"), "STATIC_ROOT": str(state / "static"),
        "WARGAME_AUTO": "false", "LOG_LEVEL": setting("LOAD_LOG_LEVEL", "WARNING"),
        "LOGIN_RATE_LIMIT": setting("LOAD_LOGIN_RATE_LIMIT", "100000/m"),
        "LOAD_CREDENTIALS": str(state / "credentials.json"), "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "immune.settings",
    }
    for name in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        env.pop(name, None)  # the broker is REDIS_URL's database, no other
    return env


def prepare(env: dict, credentials: Path, log: Path) -> dict | None:
    """migrate, collectstatic and (unless LOAD_SEED=0) seed; returns the seed's summary."""
    python = str(BIN / "python")
    run(env, python, "manage.py", "migrate", "--noinput", log=log)
    run(env, python, "manage.py", "collectstatic", "--noinput", log=log)
    if setting("LOAD_SEED", "1") == "0":
        return None
    print("seeding (demo --no-wargame + generated APVs) ...", flush=True)
    run(env, python, "loadtests/seed.py", "--credentials", str(credentials),
        "--apvs", setting("LOAD_SEED_APVS", "5000"), log=log)
    return json.loads(log.read_text().strip().splitlines()[-1])


def start_stack(env: dict, port: int, workers: str, report: Path,
                *, celery: bool = True) -> tuple[subprocess.Popen, subprocess.Popen | None]:
    """uvicorn (the production command, on loopback) and a Celery worker; ready when
    /health/ready answers 200."""
    server = start(env, str(BIN / "uvicorn"), "immune.asgi:application", "--host",
                   "127.0.0.1", "--port", str(port), "--workers", workers,
                   "--proxy-headers", "--log-level", "warning", log=report / "uvicorn.log")
    worker = start(env, str(BIN / "celery"), "-A", "immune", "worker", "-l", "warning",
                   "--concurrency", "1", log=report / "celery.log") if celery else None
    wait_ready(f"http://127.0.0.1:{port}", server, report / "uvicorn.log")
    return server, worker


def main() -> int:  # noqa: PLR0915 (one linear script)
    stress = setting("STRESS", "0") not in ("0", "false", "no")
    db_url = setting("LOAD_DATABASE_URL", setting(
        "DATABASE_URL", "postgres://postgres@127.0.0.1:5432/immune_load"))
    redis_url = setting("LOAD_REDIS_URL", setting("REDIS_URL", "redis://127.0.0.1:6379/12"))
    users = int(setting("LOAD_USERS", "100"))
    spawn_rate = setting("LOAD_SPAWN_RATE", "50")
    duration = setting("LOAD_DURATION", "60s")
    wait = setting("LOAD_WAIT", "0")
    workers = setting("LOAD_WEB_WORKERS", "2")
    default_classes = "ApiReader" if stress else (
        "HealthUser;ApiReader;DecisionWriter@50;ConsoleReviewer@20;"
        "DecisionWriter,WebSocketListener@110")
    phases = parse_phases(setting("LOAD_CLASSES", default_classes), users)

    db_name = db_url.rsplit("/", 1)[1].split("?")[0]
    state = REPORTS / "state" / db_name
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    report = REPORTS / (stamp + ("-stress" if stress else ""))
    report.mkdir(parents=True, exist_ok=True)
    state.mkdir(parents=True, exist_ok=True)
    credentials = state / "credentials.json"
    port = int(setting("LOAD_PORT", "0")) or free_port()
    base = f"http://127.0.0.1:{port}"
    env = production_env(db_url=db_url, redis_url=redis_url, state=state)
    summary: dict = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python "
                   f"{platform.python_version()}, load generator on the same machine",
        "database": db_url.rsplit("@", 1)[-1], "redis": redis_url.rsplit("@", 1)[-1],
        "web": f"uvicorn, {workers} workers", "report": str(report.relative_to(ROOT)),
        "settings": {"LOAD_USERS": users, "LOAD_SPAWN_RATE": spawn_rate,
                     "LOAD_DURATION": duration, "LOAD_WAIT": wait, "STRESS": stress,
                     "LOAD_CLASSES": setting("LOAD_CLASSES", default_classes)},
        "load_average_at_start": load_average(),
    }
    print(f"load test: report in {report.relative_to(ROOT)}; load average {load_average()}",
          flush=True)

    def on_signal(signum, _frame):
        raise SystemExit(f"stopped by signal {signum}")

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)
    setup_log = report / "setup.log"
    try:
        summary["database_setup"] = ensure_database(db_url)
        summary["seed"] = prepare(env, credentials, setup_log)
        server, worker = start_stack(env, port, workers, report)
        print(f"stack up at {base} (uvicorn pid {server.pid}, celery pid {worker.pid})",
              flush=True)
        summary["phases"] = []
        files = "loadtests/locustfile.py" + (",loadtests/stress_shape.py" if stress else "")
        for number, (classes, count) in enumerate(phases if not stress else phases[:1], 1):
            label = f"{number}-{'+'.join(classes)}"
            prefix = report / label
            writes = report / f"{label}-writes.json"
            argv = [str(BIN / "locust"), "-f", files, "--headless", "--host", base,
                    "--csv", str(prefix), "--html", str(report / f"{label}.html"),
                    "--only-summary", "--loglevel", "WARNING"]
            if stress:
                argv += ["-t", setting("LOAD_STRESS_TIMEOUT", "30m")]
            else:
                argv += ["-u", str(count), "-r", spawn_rate, "-t", duration, "--reset-stats"]
            argv += classes
            phase_env = {**env, "LOAD_WRITES_FILE": str(writes),
                         "LOAD_STRESS_RESULT": str(report / "stress.json")}
            if "DecisionWriter" in classes:
                targets = report / f"{label}-targets.json"
                phase_env["LOAD_TARGETS"] = str(targets)
                if pending_targets(db_url, targets) < 1000:
                    print("warning: fewer than 1,000 APVs await review; writers may run out "
                          "(LOAD_SEED_APVS tops them up on the next run)", flush=True)
            since = datetime.now(UTC)
            before = {"load_average": load_average(),
                      "web_cpu_s": group_cpu_seconds(server.pid),
                      "worker_cpu_s": group_cpu_seconds(worker.pid)}
            print(f"phase {label}: {count if not stress else 'stress'} users ... "
                  f"(load average {before['load_average']})", flush=True)
            started = time.monotonic()
            with (report / f"{label}-locust.log").open("w") as out:
                locust = subprocess.Popen(argv, cwd=ROOT, env=phase_env, stdout=out,
                                          stderr=subprocess.STDOUT, start_new_session=True)
                STARTED.append(locust)
                locust_cpu = 0.0
                while locust.poll() is None:
                    locust_cpu = max(locust_cpu, group_cpu_seconds(locust.pid))
                    time.sleep(1)
                STARTED.remove(locust)
            wall = time.monotonic() - started
            phase = {
                "phase": label, "classes": classes, "users": "stress" if stress else count,
                "command": shlex.join([Path(argv[0]).name, *argv[1:]]).replace(str(ROOT) + "/",
                                                                              ""),
                "locust_exit_code": locust.returncode, "wall_s": round(wall, 1),
                "load_average_before": before["load_average"],
                "load_average_after": load_average(),
                "cpu_s": {"web": round(group_cpu_seconds(server.pid) - before["web_cpu_s"], 1),
                          "celery": round(group_cpu_seconds(worker.pid)
                                          - before["worker_cpu_s"], 1),
                          "locust": round(locust_cpu, 1)},
                "stats": read_stats(prefix),
            }
            if writes.is_file():
                phase["decisions"] = check_decisions(db_url, writes, since)
            summary["phases"].append(phase)
            if stress and (report / "stress.json").is_file():
                summary["stress"] = json.loads((report / "stress.json").read_text())
            if server.poll() is not None:
                raise SystemExit(f"the web server died during {label}; see uvicorn.log")
    finally:
        stop_all()
    summary["load_average_at_end"] = load_average()
    (report / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    text = markdown(summary)
    (report / "summary.md").write_text(text)
    print(text)
    return 0


def _ms(value) -> str:
    return "–" if value is None else f"{value:.0f}"


def markdown(summary: dict) -> str:
    lines = [f"# Load test {summary['date']}", "",
             f"{summary['machine']}; {summary['web']}; PostgreSQL {summary['database']}; "
             f"Redis {summary['redis']}; load average at start {summary['load_average_at_start']}.",
             f"Settings: {json.dumps(summary['settings'])}", ""]
    health_rps = None
    for phase in summary.get("phases", []):
        lines += [f"## {phase['phase']} ({phase['users']} users)", "",
                  f"`{phase['command']}`", "",
                  f"load average before {phase['load_average_before']}, after "
                  f"{phase['load_average_after']}; CPU seconds during the phase: "
                  f"{json.dumps(phase['cpu_s'])}", "",
                  "| request | count | errors | req/s | p50 ms | p95 ms | p99 ms | max ms |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for row in phase["stats"]:
            lines.append(f"| {row['type']} {row['name']} | {row['requests']} | "
                         f"{row['failures']} ({row['error_ratio']:.2%}) | {row['rps'] or 0:.1f} | "
                         f"{_ms(row['p50_ms'])} | {_ms(row['p95_ms'])} | {_ms(row['p99_ms'])} | "
                         f"{_ms(row['max_ms'])} |")
        total = next((r for r in phase["stats"] if r["name"] == "Aggregated"), None)
        if phase["classes"] == ["HealthUser"] and total:
            health_rps = total["rps"]
        elif total and health_rps and total["rps"]:
            lines += ["", f"Throughput ratio to /health/live in this run: "
                          f"{total['rps'] / health_rps:.2f}"]
        if "decisions" in phase:
            d = phase["decisions"]
            lines += ["", f"Decisions: {d['answered_2xx']} answered 2xx, {d['decision_rows']} "
                          f"rows; lost {len(d['lost'])}, duplicated {len(d['duplicated'])}, "
                          f"rows for requests still in flight when Locust stopped "
                          f"{len(d['in_flight_at_stop'])}, for failed requests "
                          f"{len(d['rows_for_failed_requests'])}, for APVs never sent "
                          f"{len(d['rows_for_apvs_never_sent'])}; "
                          f"{d['replays_answered_as_replays']} replays recognised; "
                          f"{d['failed_requests']} failed requests"]
        lines.append("")
    stress = summary.get("stress")
    if stress:
        broken, good = stress["breaking_point"], stress["last_good_step"]
        lines += ["## Breaking point", ""]
        if broken:
            lines.append(f"Broke at {broken['users']} users: {broken['rps']} req/s, p95 "
                         f"{_ms(broken['p95_ms'])} ms, errors {broken['error_ratio']:.2%} "
                         f"(limits: p95 > {stress['limits']['p95_ms']:.0f} ms or errors > "
                         f"{stress['limits']['error_ratio']:.0%}).")
        else:
            lines.append("No step broke the limits before the maximum user count.")
        if good:
            lines.append(f"Last step within the limits: {good['users']} users, {good['rps']} "
                         f"req/s, p95 {_ms(good['p95_ms'])} ms, errors "
                         f"{good['error_ratio']:.2%}.")
        lines += ["", "| users | req/s | p50 ms | p95 ms | p99 ms | errors |",
                  "| --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {s['users']} | {s['rps']} | {_ms(s['p50_ms'])} | {_ms(s['p95_ms'])} | "
                  f"{_ms(s['p99_ms'])} | {s['errors']} ({s['error_ratio']:.2%}) |"
                  for s in stress["steps"]]
        lines.append("")
    lines.append(f"Report folder: {summary['report']}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        stop_all()
        sys.exit(130)
