"""Processes the fault tests start, own and stop: a redis-server, a PostgreSQL cluster and
the production web server (uvicorn) on ephemeral loopback ports.

The shared services are never touched: each fault test stops and restarts only what it
started here.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROOT, free_port

#: A busy machine (CI, a load test beside us) takes a while to import Django twice.
STARTUP_S = 120


def _wait(what: str, ready, timeout: float = 20.0, process=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            pytest.fail(f"{what} exited with {process.returncode}")
        if ready():
            return
        time.sleep(0.05)
    pytest.fail(f"{what} not ready in {timeout} s")


class RedisServer:
    """A redis-server of our own on a fixed ephemeral port, stopped and started at will."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _ping(self) -> bool:
        return subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True,
                              text=True).stdout.strip() == "PONG"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(self.port),
             "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait("redis-server", self._ping, process=self.process)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


@contextlib.contextmanager
def redis_server(directory: Path):
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    server = RedisServer(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _pg_bin(name: str) -> str:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not found:
        pytest.skip(f"PostgreSQL's {name} is not installed")
    return str(found[-1])


class PostgresCluster:
    """A PostgreSQL cluster of our own (initdb in a temporary folder, trust auth, loopback
    on an ephemeral port). As root the server runs as the ``postgres`` user, as it must."""

    def __init__(self) -> None:
        self.port = free_port()
        # Not under pytest's tmp_path: its parents are private to root, and the server runs
        # as postgres. A folder of its own, removed by ``postgres_cluster``.
        self.directory = Path(tempfile.mkdtemp(prefix="immune-pg-"))
        self.data = self.directory / "pgdata"
        self.user_prefix: list[str] = []
        if os.geteuid() == 0:
            self.user_prefix = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.directory, "postgres")

    def _run(self, *argv: str) -> None:
        result = subprocess.run([*self.user_prefix, *argv], capture_output=True, text=True,
                                timeout=120)
        if result.returncode:
            pytest.fail(f"{argv[0]} failed: {result.stderr[-2000:]}")

    def init(self) -> None:
        self._run(_pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                  "--no-sync", "-E", "UTF8")

    def start(self) -> None:
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory} "
                   "-c fsync=off -c full_page_writes=off -c synchronous_commit=off")
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-o", options,
                  "-l", str(self.directory / "postgres.log"), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def createdb(self, name: str) -> None:
        self._run(_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U",
                  "postgres", name)


@contextlib.contextmanager
def postgres_cluster():
    cluster = PostgresCluster()
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        try:
            cluster.stop("immediate")
        finally:
            shutil.rmtree(cluster.directory, ignore_errors=True)


def production_env(**overrides: str) -> dict[str, str]:
    """The production profile, as an operator starts it, on loopback HTTP."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(DJANGO_ENV="production", SECRET_KEY=secrets.token_urlsafe(48),
               ALLOWED_HOSTS="127.0.0.1", SECURE_SSL_REDIRECT="false",
               DJANGO_SETTINGS_MODULE="immune.settings", CELERY_BROKER_URL="",
               CELERY_RESULT_BACKEND="", CELERY_TASK_ALWAYS_EAGER="", LOG_FORMAT="json")
    env.update(overrides)
    return env


@contextlib.contextmanager
def uvicorn(env: dict[str, str], log_path: Path, *, workers: int = 1,
            startup_s: float = STARTUP_S):
    """``uvicorn immune.asgi:application`` (the production command); yields its base URL.
    If it is not live within ``startup_s``, the test fails with the end of its log."""
    port = free_port()
    with log_path.open("w") as log_file:
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "immune.asgi:application", "--host",
             "127.0.0.1", "--port", str(port), "--workers", str(workers),
             # An open WebSocket would hold a graceful shutdown for the whole wait below.
             "--timeout-graceful-shutdown", "3"],
            cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            try:
                _wait("uvicorn", lambda: request(base + "/health/live", timeout=2)[0] == 200,
                      timeout=startup_s, process=server)
            except pytest.fail.Exception as exc:
                log_file.flush()
                pytest.fail(f"{exc}:\n{log_path.read_text()[-3000:]}")
            yield base
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=5)


def request(url: str, *, method: str = "GET", token: str | None = None,
            body: dict | None = None, headers: dict[str, str] | None = None,
            timeout: float = 15.0) -> tuple[int, Any, Any]:
    """(status, headers (case-insensitive), parsed JSON or text); status 0 if nothing answered."""
    headers = {"Accept": "application/json", **(headers or {})}
    if token:
        headers["Authorization"] = f"Token {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:  # noqa: S310 (loopback)
            status, head, raw = response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        status, head, raw = exc.code, exc.headers, exc.read()
    except OSError:
        return 0, {}, ""
    try:
        return status, head, json.loads(raw)
    except ValueError:
        return status, head, raw.decode(errors="replace")


def until(predicate, timeout: float, interval: float = 0.2) -> float | None:
    """Seconds until ``predicate()`` held, or None if it did not within ``timeout``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(interval)
    return None
