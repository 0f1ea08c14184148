"""Test-suite wiring: which services the run has, and what happens without them.

The suite runs on the embedded default (SQLite, local memory) and, with
``DATABASE_URL``/``REDIS_URL`` set, on PostgreSQL and Redis. Tests marked
``postgres`` or ``redis`` need that server; they are skipped with a reason where it
is not configured, and fail instead when ``IMMUNE_REQUIRE_SERVICES=1`` (as in CI).
"""

from __future__ import annotations

import io
import os
import tempfile

import pytest

REQUIRE_SERVICES = os.environ.get("IMMUNE_REQUIRE_SERVICES") == "1"

# This run's own cache and channel-layer namespaces on a shared Redis, so events and keys of
# other processes (a dev server, a benchmark, another run) never reach these tests. Set in
# the environment, so the servers and workers the tests start share them.
_RUN = f"test{os.getpid()}"
os.environ.setdefault("CHANNEL_LAYER_PREFIX", f"immune-{_RUN}")
os.environ.setdefault("CACHE_KEY_PREFIX", f"immune-cache-{_RUN}")

# One wargame-environment folder for the whole run and the servers it starts (reachable by
# the sandbox user, and content-keyed, so it may outlive the run): the demo's environments
# are built once, not once per fixture that loads the demo.
if not os.environ.get("WARGAME_ENV_DIR"):
    _ENVS = os.path.join(tempfile.gettempdir(), f"immune-test-envs-{os.getuid()}")
    os.makedirs(_ENVS, mode=0o755, exist_ok=True)
    os.environ["WARGAME_ENV_DIR"] = _ENVS


@pytest.fixture(autouse=True, scope="session")
def _shared_wargame_environments():
    from django.conf import settings

    settings.WARGAME_ENV_DIR = os.environ["WARGAME_ENV_DIR"]


def _database_vendor() -> str:
    url = os.environ.get("DATABASE_URL", "")
    return "postgresql" if url.startswith(("postgres://", "postgresql://")) else "sqlite"


def _redis_configured() -> bool:
    return os.environ.get("REDIS_URL", "").startswith(("redis://", "rediss://"))


def _service_problems() -> list[str]:
    problems = []
    if _database_vendor() != "postgresql":
        problems.append("DATABASE_URL does not point at PostgreSQL")
    else:
        import psycopg

        try:
            psycopg.connect(os.environ["DATABASE_URL"], connect_timeout=3).close()
        except Exception as exc:
            problems.append(f"PostgreSQL unreachable: {exc}")
    if not _redis_configured():
        problems.append("REDIS_URL is not set")
    else:
        import redis

        try:
            redis.Redis.from_url(os.environ["REDIS_URL"], socket_connect_timeout=3).ping()
        except Exception as exc:
            problems.append(f"Redis unreachable: {exc}")
    return problems


def pytest_report_header(config):
    redis_url = os.environ.get("REDIS_URL") or "not set (local-memory cache and channel layer)"
    return [
        f"immune: database vendor = {_database_vendor()}",
        f"immune: redis = {redis_url}",
        f"immune: IMMUNE_REQUIRE_SERVICES = {int(REQUIRE_SERVICES)}",
    ]


def pytest_sessionstart(session):
    if REQUIRE_SERVICES and (problems := _service_problems()):
        pytest.exit("IMMUNE_REQUIRE_SERVICES=1 but: " + "; ".join(problems), returncode=3)


def pytest_runtest_setup(item):
    needs = {
        "postgres": (_database_vendor() == "postgresql", "needs DATABASE_URL=postgres://..."),
        "redis": (_redis_configured(), "needs REDIS_URL=redis://..."),
    }
    for marker, (available, reason) in needs.items():
        if item.get_closest_marker(marker) and not available:
            if REQUIRE_SERVICES:
                pytest.fail(f"IMMUNE_REQUIRE_SERVICES=1: {reason}")
            pytest.skip(reason)


@pytest.fixture(autouse=True, scope="session")
def _celery_in_process():
    """Tasks called from tests run in-process; a dedicated test drives a real worker."""
    from immune.celery import app

    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = previous


def pytest_configure(config):
    """Settings may have been read before this module: apply the run's prefixes to them."""
    from django.conf import settings

    if not settings.configured:
        return
    layer = settings.CHANNEL_LAYERS["default"]
    if "CONFIG" in layer:
        layer["CONFIG"]["prefix"] = os.environ["CHANNEL_LAYER_PREFIX"]
    if "redis" in settings.CACHES["default"]["BACKEND"].lower():
        settings.CACHES["default"]["KEY_PREFIX"] = os.environ["CACHE_KEY_PREFIX"]


@pytest.fixture(autouse=True)
def _fresh_channel_layer():
    """Each test gets its own channel-layer instance: channels-redis binds its receive state
    to the event loop that first used it, and every async_to_sync call has a new loop."""
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture(autouse=True)
def _closed_breakers():
    """Each test starts with every circuit breaker closed: one test's outage (a closed port
    on purpose) must not open a breaker for the tests after it."""
    from apps.core.breakers import BREAKERS

    for breaker in BREAKERS.values():
        breaker.reset()
    yield


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # PBKDF2's cost is the point in production and only slowness in tests.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Each test starts with an empty cache (rate-limit counters, cached predictions).

    On Redis only our cache keys are dropped: FLUSHDB would also wipe the channel layer.
    """
    from django.core.cache import cache

    if hasattr(cache, "delete_pattern"):  # django-redis: honours KEY_PREFIX
        cache.delete_pattern("*")
    else:
        cache.clear()
    yield


@pytest.fixture
def reviewer(db, django_user_model):
    from django.core.management import call_command

    call_command("create_reviewer", "rita", stdout=io.StringIO())
    return django_user_model.objects.get(username="rita")


@pytest.fixture
def lead(db, django_user_model):
    from django.core.management import call_command

    call_command("create_reviewer", "leo", "--lead", stdout=io.StringIO())
    return django_user_model.objects.get(username="leo")
