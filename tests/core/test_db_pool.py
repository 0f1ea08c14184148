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

from tests.core.test_ws_processes import daphne
from tests.factories import UserFactory
from tests.helpers import current_database_url

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
POOL_MAX = 4
APP_NAME = "immune-pool-test"


def _server_connections() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                       [APP_NAME])
        return cursor.fetchone()[0]


def test_concurrent_requests_stay_within_the_pool(transactional_db, tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")
    user = UserFactory(is_staff=True)
    token = Token.objects.create(user=user).key
    env = {"DATABASE_URL": f"{current_database_url()}?application_name={APP_NAME}",
           "DATABASE_POOL_MAX_SIZE": str(POOL_MAX)}
    with daphne(tmp_path, env) as (port, _log):
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

        try:
            with ThreadPoolExecutor(max_workers=100) as pool:
                results = list(pool.map(get, range(300)))
        finally:
            done.set()
            watcher.join()
    deadline = time.monotonic() + 10  # the server's backends end with it
    while _server_connections() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert {status for status, _ in results} == {200}
    assert 1 <= peak[0] <= POOL_MAX, peak[0]
