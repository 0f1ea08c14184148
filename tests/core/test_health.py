"""Operations endpoints check the real components."""

import pytest

from tests.helpers import closed_port, last_json_line, run_django

ENDPOINTS = ["/health", "/health/live", "/health/ready", "/health/startup", "/health/components"]

PROBE = """
from django.test import Client
c = Client()
out = {}
for path in ['/health', '/health/live', '/health/ready', '/health/components']:
    r = c.get(path)
    out[path] = {'code': r.status_code, 'body': r.json()}
print(json.dumps(out))
"""


@pytest.mark.django_db
@pytest.mark.parametrize("path", ENDPOINTS)
def test_health_endpoints_answer_without_login(client, path):
    response = client.get(path)
    assert response.status_code == 200, response.content
    assert response["Cache-Control"].startswith("max-age=0")


@pytest.mark.django_db
def test_ready_reports_each_component_with_latency(client):
    body = client.get("/health/ready").json()
    assert body["status"] == "healthy"
    names = set(body["components"])
    assert {"database", "cache", "broker", "channel_layer", "sandbox"} <= names
    # a circuit breaker per network dependency; "redis" only where Redis is configured
    assert {"circuit.broker", "circuit.forge", "circuit.osv", "circuit.evidence",
            "circuit.nvd"} <= names
    assert {n for n in names if n.startswith("circuit.")} <= {
        "circuit.redis", "circuit.broker", "circuit.forge", "circuit.osv", "circuit.evidence",
        "circuit.nvd"}
    for component in body["components"].values():
        assert component["status"] == "healthy"
        assert component["latency_ms"] >= 0
        assert component["error"] == ""


@pytest.mark.django_db
def test_components_names_the_backends_in_use(client, settings):
    components = client.get("/health/components").json()["components"]
    from django.db import connection

    assert components["database"]["backend"] == connection.vendor
    expected_cache = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]
    assert components["cache"]["backend"] == expected_cache


def test_database_on_a_closed_port_is_unhealthy_and_ready_is_503():
    port = closed_port()
    # Each request waits the pool's timeout for a connection that never comes: 1 s, not 10.
    result = run_django(PROBE, env={"DATABASE_URL": f"postgres://postgres@127.0.0.1:{port}/x",
                                    "DATABASE_POOL_TIMEOUT_S": "1"})
    assert result.returncode == 0, result.stderr
    out = last_json_line(result.stdout)
    assert out["/health"]["code"] == 200  # basic health does not depend on the database
    assert out["/health/live"]["code"] == 200
    assert out["/health/ready"]["code"] == 503
    ready = out["/health/ready"]["body"]
    assert ready["status"] == "unhealthy"
    assert ready["components"]["database"]["status"] == "unhealthy"
    assert ready["components"]["database"]["error"] == "OperationalError"
    assert ready["components"]["cache"]["status"] == "healthy"
    # components reports the same picture but is not a gate
    assert out["/health/components"]["code"] == 200
    assert out["/health/components"]["body"]["components"]["database"]["status"] == "unhealthy"


def test_redis_on_a_closed_port_is_degraded_not_unready(tmp_path):
    """Redis down: its components are unhealthy, yet immune serves reads and decisions, so
    /health/ready stays 200 (degraded) and the pod stays in rotation."""
    port = closed_port()
    env = {"REDIS_URL": f"redis://127.0.0.1:{port}/0", "DATABASE_URL": "",
           "IMMUNE_DATA_DIR": str(tmp_path), "CELERY_BROKER_URL": "",
           "CELERY_RESULT_BACKEND": ""}
    setup = (
        "from django.core.management import call_command\n"
        "call_command('migrate', verbosity=0)\n"
    )
    result = run_django(setup + PROBE, env=env)
    assert result.returncode == 0, result.stderr
    ready = last_json_line(result.stdout)["/health/ready"]
    assert ready["code"] == 200
    assert ready["body"]["status"] == "degraded"
    components = ready["body"]["components"]
    assert components["database"]["status"] == "healthy"
    for name in ("cache", "broker", "channel_layer"):
        assert components[name]["status"] == "unhealthy", name


def test_startup_is_503_while_migrations_are_pending(tmp_path):
    env = {"DATABASE_URL": "", "REDIS_URL": "", "IMMUNE_DATA_DIR": str(tmp_path)}
    code = """
from django.test import Client
r = Client().get('/health/startup')
print(json.dumps({'code': r.status_code, 'body': r.json()}))
"""
    out = last_json_line(run_django(code, env=env).stdout)
    assert out["code"] == 503
    assert out["body"]["pending_migrations"] > 0


def test_degraded_when_a_check_is_slower_than_the_threshold(db, settings):
    from apps.core import health

    settings.HEALTH_DEGRADED_MS = -1  # every real check takes more than that
    overall, components = health.run_checks()
    assert overall == health.DEGRADED
    assert {c.status for c in components} == {health.DEGRADED}
