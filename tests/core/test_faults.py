"""Faults in CI (issue 12): the production server (uvicorn, DJANGO_ENV=production) while its
own Redis or its own PostgreSQL cluster is stopped and started again, no restart between.

- Redis down: reads are served (cache bypassed, throttles fail open and say so in the log),
  a write that needs the broker answers 503 with Retry-After and writes nothing, health is
  degraded (not unready); within 10 s of Redis returning everything works again.
- PostgreSQL down: 503 with Retry-After on the API, the console and readiness; liveness
  stays 200; requests succeed again once the cluster is back.
"""

from __future__ import annotations

import pytest

from tests.factories import pyyaml_upgrade_patch
from tests.faults import (
    postgres_cluster,
    production_env,
    redis_server,
    request,
    until,
    uvicorn,
)
from tests.helpers import current_database_url, last_json_line, run_django

RECOVERY_AIM_S = 10.0


@pytest.mark.postgres  # the server process must see the test database
@pytest.mark.django_db(transaction=True)
def test_redis_outage_serves_reads_refuses_queued_writes_and_recovers(tmp_path, reviewer):
    from rest_framework.authtoken.models import Token

    from apps.wargaming.models import WargameRun

    patch = pyyaml_upgrade_patch(tmp_path)
    token = Token.objects.create(user=reviewer).key
    log_path = tmp_path / "server.log"
    with redis_server(tmp_path) as redis:
        env = production_env(DATABASE_URL=current_database_url(), REDIS_URL=redis.url,
                             IMMUNE_DATA_DIR=str(tmp_path))
        with uvicorn(env, log_path) as base:
            apvs = f"{base}/api/v1/apvs/"
            validate = f"{base}/api/v1/wargaming/validate"
            assert request(apvs, token=token)[0] == 200

            redis.stop()
            # Reads: served every time (the throttle's cache reads are misses).
            for _ in range(6):
                status, _, body = request(apvs, token=token)
                assert status == 200, body
                assert body["count"] >= 1
            # A write whose point is a task: 503, Retry-After, nothing stored.
            runs = WargameRun.objects.count()
            status, headers, body = request(validate, method="POST", token=token,
                                            body={"patch": patch.pk})
            assert status == 503, body
            assert headers["Retry-After"] == "5"
            assert body["error"]["code"] == "service_unavailable"
            assert body["error"]["details"]["dependency"] == "broker"
            assert WargameRun.objects.count() == runs
            # Health: degraded, still ready (the pod stays in rotation for reads).
            status, _, ready = request(f"{base}/health/ready")
            assert status == 200, ready
            assert ready["status"] == "degraded"
            assert ready["components"]["database"]["status"] == "healthy"
            assert ready["components"]["cache"]["status"] == "unhealthy"
            assert ready["components"]["circuit.redis"]["status"] == "degraded"
            log = log_path.read_text()
            assert "throttle.fail_open" in log
            assert "breaker.opened" in log

            redis.start()  # the same port, an empty Redis: nothing restarted on our side

            def recovered() -> bool:
                status, _, components = request(f"{base}/health/components")
                if status != 200 or components["components"]["cache"]["status"] != "healthy":
                    return False
                return request(validate, method="POST", token=token,
                               body={"patch": patch.pk})[0] == 202

            took = until(recovered, timeout=RECOVERY_AIM_S)
            assert took is not None, f"not recovered within {RECOVERY_AIM_S} s"
            print(f"redis: recovered {took:.2f} s after it returned")  # noqa: T201 (-s)
            assert WargameRun.objects.filter(patch=patch).count() == runs + 1
            status, _, ready = request(f"{base}/health/ready")
            assert ready["components"]["circuit.redis"]["status"] == "healthy"
    assert "Traceback" not in log_path.read_text()


SEED = """
from django.core.management import call_command
from rest_framework.authtoken.models import Token
from django.contrib.auth import get_user_model
call_command('migrate', verbosity=0)
call_command('create_reviewer', 'rita', stdout=sys.stderr)
user = get_user_model().objects.get(username='rita')
print(json.dumps({'token': Token.objects.create(user=user).key}))
"""


@pytest.mark.postgres
def test_postgresql_outage_is_503_everywhere_and_recovers_without_restart(tmp_path):
    with postgres_cluster() as cluster:
        cluster.createdb("immune")
        db_env = {"DATABASE_URL": cluster.url("immune"), "REDIS_URL": "",
                  "IMMUNE_DATA_DIR": str(tmp_path), "CELERY_BROKER_URL": "",
                  "CELERY_RESULT_BACKEND": ""}
        seeded = run_django(SEED, env=db_env, timeout=180)
        assert seeded.returncode == 0, seeded.stderr[-3000:]
        token = last_json_line(seeded.stdout)["token"]

        # A 3 s pool wait (10 s by default) keeps each refused request short here.
        env = production_env(**db_env, DATABASE_POOL_TIMEOUT_S="3")
        log_path = tmp_path / "server.log"
        with uvicorn(env, log_path) as base:
            apvs = f"{base}/api/v1/apvs/"
            assert request(apvs, token=token)[0] == 200

            cluster.stop("fast")
            status, headers, body = request(apvs, token=token)
            assert status == 503, body
            assert headers["Retry-After"] == "5"
            assert body["error"]["code"] == "service_unavailable"
            # the console: a session to look up asks the database
            status, headers, _ = request(f"{base}/admin/",
                                         headers={"Cookie": "sessionid=" + "a" * 32})
            assert (status, headers.get("Retry-After")) == (503, "5")
            status, _, ready = request(f"{base}/health/ready")
            assert status == 503
            assert ready["components"]["database"]["status"] == "unhealthy"
            assert request(f"{base}/health/live")[0] == 200

            cluster.start()
            took = until(lambda: request(apvs, token=token)[0] == 200, timeout=RECOVERY_AIM_S)
            assert took is not None, f"not recovered within {RECOVERY_AIM_S} s"
            print(f"postgresql: recovered {took:.2f} s after it returned")  # noqa: T201 (-s)
            # Every pooled connection that died with the old server is replaced, not reused.
            for _ in range(12):
                assert request(apvs, token=token)[0] == 200
            assert request(f"{base}/health/ready")[0] == 200
    assert "Traceback" not in log_path.read_text()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_hung_redis_costs_a_few_slow_requests_then_none(tmp_path, reviewer):
    """A Redis that accepts nothing (SIGSTOP: no refusal, only silence) is worse than one
    that is down: every call waits out the socket timeout. The breaker opens after
    BREAKER_REDIS_FAILURES such calls; from then on reads are fast again."""
    import signal
    import time

    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=reviewer).key
    log_path = tmp_path / "server.log"
    with redis_server(tmp_path) as redis:
        env = production_env(DATABASE_URL=current_database_url(), REDIS_URL=redis.url,
                             IMMUNE_DATA_DIR=str(tmp_path))
        with uvicorn(env, log_path) as base:
            apvs = f"{base}/api/v1/apvs/"
            assert request(apvs, token=token)[0] == 200
            redis.process.send_signal(signal.SIGSTOP)
            try:
                durations = []
                for _ in range(6):
                    started = time.monotonic()
                    assert request(apvs, token=token)[0] == 200
                    durations.append(time.monotonic() - started)
            finally:
                redis.process.send_signal(signal.SIGCONT)
            print("hung redis, request seconds:", [round(d, 2) for d in durations])  # noqa: T201
            assert all(d < 0.5 for d in durations[-3:]), durations
            took = until(lambda: request(f"{base}/health/components")[2]["components"]
                         ["cache"]["status"] == "healthy", timeout=RECOVERY_AIM_S)
            assert took is not None
