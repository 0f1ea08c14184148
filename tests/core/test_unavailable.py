"""A database that is down answers 503 with Retry-After, not 500 (issue 12)."""

from __future__ import annotations

import pytest

from tests.helpers import closed_port, last_json_line, run_django

PROBE = """
from django.test import Client
c = Client(raise_request_exception=False)
c.cookies['sessionid'] = 'a' * 32  # a session to look up: the database is asked
out = {}
for name, path, headers in [
        ('api', '/api/v1/apvs/', {'HTTP_AUTHORIZATION': 'Token 0123456789abcdef'}),
        ('admin', '/admin/', {})]:
    r = c.get(path, **headers)
    out[name] = {'code': r.status_code, 'retry_after': r.get('Retry-After'),
                 'body': r.content.decode()[:300]}
r = Client().get('/health/live')  # a probe carries no session
out['live'] = {'code': r.status_code}
print(json.dumps(out))
"""


@pytest.mark.parametrize("pool", ["true", "false"])
def test_a_database_that_is_down_is_503_with_retry_after(pool):
    port = closed_port()
    # DEBUG off, as in production: Django's handler500 then answers for middleware failures
    result = run_django(PROBE, env={"DATABASE_URL": f"postgres://postgres@127.0.0.1:{port}/x",
                                    "DEBUG": "false", "DATABASE_POOL": pool,
                                    "DATABASE_POOL_TIMEOUT_S": "1",  # per wait: 4 here
                                    "DATABASE_POOL_MIN_SIZE": "0"})
    assert result.returncode == 0, result.stderr[-3000:]
    out = last_json_line(result.stdout)
    assert out["live"]["code"] == 200  # liveness does not depend on the database
    for name in ("api", "admin"):
        assert out[name]["code"] == 503, out[name]
        assert out[name]["retry_after"] == "5"
    assert '"service_unavailable"' in out["api"]["body"]
