"""Connections that hold under ASGI: hundreds of concurrent API requests through a real
ASGI server keep PostgreSQL's connections from it within the pool's bound (issue 12)."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from rest_framework.authtoken.models import Token

from tests.core.test_ws_processes import _start_server, _wait_until_live
from tests.factories import UserFactory
from tests.helpers import free_port

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
POOL_MAX = 4
APP_NAME = "immune-pool-test"


def _server_connections() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                       [APP_NAME])
        return cursor.fetchone()[0]


def test_concurrent_requests_stay_within_the_pool(transactional_db, tmp_path, monkeypatch):
    from tests.core import test_ws_processes

    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")
    user = UserFactory(is_staff=True)
    token = Token.objects.create(user=user).key
    base_url = test_ws_processes._database_url()
    monkeypatch.setattr(test_ws_processes, "_database_url",
                        lambda: f"{base_url}?application_name={APP_NAME}")
    monkeypatch.setenv("DATABASE_POOL_MAX_SIZE", str(POOL_MAX))
    port = free_port()
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log:
        server = _start_server(port, tmp_path, log)
        try:
            _wait_until_live(server, port, log_path)
            peak = [0]
            done = threading.Event()

            def watch():
                try:
                    while not done.is_set():
                        peak[0] = max(peak[0], _server_connections())
                        time.sleep(0.02)
                finally:
                    connection.close()  # this thread's own connection

            watcher = threading.Thread(target=watch)
            watcher.start()

            def get(_):
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/api/v1/apvs/?page_size=5",
                    headers={"Authorization": f"Token {token}"})
                with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
                    return response.status, json.loads(response.read())

            with ThreadPoolExecutor(max_workers=100) as pool:
                results = list(pool.map(get, range(300)))
            done.set()
            watcher.join()
        finally:
            server.terminate()
            server.wait(timeout=10)
    deadline = time.monotonic() + 10  # the server's backends end with it
    while _server_connections() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert {status for status, _ in results} == {200}
    assert 1 <= peak[0] <= POOL_MAX, peak[0]
