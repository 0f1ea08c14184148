"""Live updates cross processes: a decision recorded here reaches a client of a real server.

The server is a separate daphne process on the same test database and the same Redis
channel layer; the decision is recorded in the test process. Only channels-redis can carry
the event from one to the other, which is what this test proves.
"""

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from apps.decisions.services import decision_record
from apps.reviews.models import APV
from tests.helpers import ROOT, current_database_url, free_port

ORIGIN = "http://127.0.0.1"


def _start_server(port: int, data_dir, log_file, env: dict[str, str] | None = None):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    full_env.update(DATABASE_URL=current_database_url(), IMMUNE_DATA_DIR=str(data_dir),
                    DJANGO_SETTINGS_MODULE="immune.settings", LOG_LEVEL="WARNING")
    full_env.update(env or {})
    return subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
         "immune.asgi:application"],
        cwd=ROOT, env=full_env, stdout=log_file, stderr=subprocess.STDOUT,
    )


@contextlib.contextmanager
def daphne(tmp_path, env: dict[str, str] | None = None):
    """A daphne process on the test database, live; yields (port, log path); stopped after."""
    port = free_port()
    log_path = tmp_path / "daphne.log"
    with log_path.open("w") as log_file:
        server = _start_server(port, tmp_path, log_file, env)
        try:
            _wait_until_live(server, port, log_path)
            yield port, log_path
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=5)


def _wait_until_live(server, port: int, log_path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"daphne exited with {server.returncode}:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"daphne did not answer /health/live in {timeout} s:\n{log_path.read_text()}")


def _receive(ws, matches, timeout: float = 5.0) -> dict:
    """The first message ``matches`` accepts; others (e.g. other runs' events on the shared
    Redis) are skipped."""
    deadline = time.monotonic() + timeout
    seen = []
    while (left := deadline - time.monotonic()) > 0:
        try:
            message = json.loads(ws.recv(timeout=left))
        except TimeoutError:
            break
        if matches(message):
            return message
        seen.append(message)
    pytest.fail(f"no matching message in {timeout} s; received {seen}")


@pytest.mark.redis
@pytest.mark.postgres  # the server process must see the test database
@pytest.mark.django_db(transaction=True)
def test_decision_in_one_process_reaches_a_client_of_another(client, reviewer, demo,
                                                              tmp_path):
    apv = (APV.objects.filter(status="pending_review").select_related("current_patch")
           .order_by("code").first())
    assert apv is not None and apv.current_patch is not None
    client.force_login(reviewer)
    cookie = f"sessionid={client.cookies['sessionid'].value}"

    with daphne(tmp_path) as (port, log_path):
        url = f"ws://127.0.0.1:{port}/ws/reviews/"

        # No session: the consumer closes before accepting, daphne refuses the handshake.
        with (pytest.raises((InvalidStatus, ConnectionClosed)) as refused,
              connect(url, origin=ORIGIN, proxy=None, open_timeout=5) as anonymous):
            anonymous.recv(timeout=5)
        if isinstance(refused.value, InvalidStatus):
            assert refused.value.response.status_code == 403

        with connect(url, origin=ORIGIN, additional_headers={"Cookie": cookie},
                     proxy=None, open_timeout=5) as ws:
            ack = json.loads(ws.recv(timeout=5))
            assert ack["type"] == "connection_ack"
            assert ack["user"] == reviewer.get_username()
            assert ack["subscriptions"] == ["apvs", "decisions", "stats"]  # the default
            ws.send(json.dumps({"type": "subscribe", "channels": ["decisions", "apvs"]}))
            subscribed = json.loads(ws.recv(timeout=5))
            assert subscribed == {"type": "subscribed",
                                  "channels": ["apvs", "decisions", "stats"]}

            result = decision_record(
                apv_code=apv.code, reviewer=reviewer, decision="false_positive",
                justification="Not reachable from our code paths.",
                patch_revision=apv.current_patch.revision,
            )
            decision_id = result.decision.pk

            made = _receive(ws, lambda m: m.get("type") == "decision.made"
                            and m["data"].get("decision_id") == decision_id)
            assert made["data"]["apv"] == apv.code
            assert made["data"]["decision"] == "false_positive"
            assert made["data"]["reviewer"] == reviewer.get_username()
            updated = _receive(ws, lambda m: m.get("type") == "apv.updated"
                               and m["data"].get("apv") == apv.code)
            assert updated["data"]["status"] == "false_positive"
    assert "Traceback" not in log_path.read_text(), log_path.read_text()


IDLE_S = 12  # past redis-py's default 5 s socket timeout and the layer's 5 s blocking pop


@pytest.mark.redis
@pytest.mark.postgres  # the server process must see the test database
@pytest.mark.django_db(transaction=True)
def test_an_idle_socket_on_redis_stays_up_and_still_gets_events(client, reviewer, tmp_path):
    """An idle /ws/reviews/ socket closed after 5.5 s on the Redis layer (the blocking pop
    outlived the client's socket timeout); idle longer than that, it must stay open and an
    event from another process must still reach it."""
    from apps.core.realtime import send_event

    client.force_login(reviewer)
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    with (daphne(tmp_path) as (port, log_path),
          connect(f"ws://127.0.0.1:{port}/ws/reviews/", origin=ORIGIN,
                  additional_headers={"Cookie": cookie}, proxy=None, open_timeout=5) as ws):
        assert json.loads(ws.recv(timeout=5))["type"] == "connection_ack"
        ws.send(json.dumps({"type": "subscribe", "channels": ["stats"]}))
        assert json.loads(ws.recv(timeout=5))["type"] == "subscribed"
        with pytest.raises(TimeoutError):  # nothing at all while idle, no close
            ws.recv(timeout=IDLE_S)
        send_event("stats", "stats.update", {"marker": "after-idle"})
        got = _receive(ws, lambda m: m.get("type") == "stats.update"
                       and m["data"].get("marker") == "after-idle")
        assert got["data"]["marker"] == "after-idle"
    log = log_path.read_text()
    assert "Traceback" not in log and "TimeoutError" not in log, log
