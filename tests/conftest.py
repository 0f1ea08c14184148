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
if os.environ.get("PYTEST_XDIST_WORKER"):
    # A pytest-xdist worker: its own namespaces, not the ones inherited from the controller
    # (each worker has its own test database; one worker's _fresh_cache must not empty
    # another's cache in the middle of a test).
    os.environ["CHANNEL_LAYER_PREFIX"] = f"immune-{_RUN}"
    os.environ["CACHE_KEY_PREFIX"] = f"immune-cache-{_RUN}"
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


# --- pytest-xdist (-n auto in pyproject's addopts): how many workers, which tests share one,
# and in what order

#: Test files that load the whole demo (real wargames and a model: a minute or more to
#: build, tests/conftest.py's DemoTemplate): one unit of work, so it is built once per run.
WHOLE_DEMO = ("tests/e2e/test_console_browser.py", "tests/ml/test_demo_model.py")
#: Units sent to the workers first (the longest, so none is left running alone at the end);
#: the rest follow by number of tests. Only an ordering: a file missing here still runs.
LONGEST_FIRST = ("whole-demo", "tests/core/test_settings.py", "tests/decisions/test_concurrency.py",
                 "tests/core/test_faults.py", "tests/core/test_demo.py",
                 "tests/wargaming/test_runs.py", "tests/api/test_schemathesis.py",
                 "tests/ml/test_corpus_model.py", "tests/api/test_walkthrough.py",
                 "tests/wargaming/test_http_exploits.py")

try:
    from xdist.scheduler import LoadScopeScheduling
except ImportError:  # pytest-xdist not installed: the suite runs in one process
    LoadScopeScheduling = None

if LoadScopeScheduling is not None:

    class FileScheduling(LoadScopeScheduling):
        """``--dist loadfile`` (all tests of a file on one worker, in order: module fixtures
        such as a server are set up once and the tests sharing one see it as they expect),
        with the WHOLE_DEMO files as one unit and the LONGEST_FIRST units sent first."""

        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "whole-demo" if path in WHOLE_DEMO else path

        def _assign_work_unit(self, node) -> None:
            for scope in reversed(LONGEST_FIRST):
                if scope in self.workqueue:
                    self.workqueue.move_to_end(scope, last=False)
            super()._assign_work_unit(node)

    @pytest.hookimpl(tryfirst=True, optionalhook=True)  # before xdist's own (loadfile)
    def pytest_xdist_make_scheduler(config, log):
        if config.getvalue("dist") == "loadfile":
            return FileScheduling(config, log)
        return None

    @pytest.hookimpl(tryfirst=True, optionalhook=True)
    def pytest_xdist_auto_num_workers(config):
        """``-n auto``: one worker more than there are cores, at most four, for the suite or
        folders of it (the suite waits on the servers, workers and browsers it starts about
        half the time, so a third worker on two cores measured 189 s against 241–249 s for
        two); none (the tests run in this process) for up to three named files or
        tests, where starting workers and their databases costs more than it saves, and
        with ``-s``, whose output a worker would not show. ``-n N`` still says exactly."""
        if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
            return None  # xdist's own hook reads it
        named = [config.invocation_params.dir / arg.split("::", 1)[0] for arg in config.args]
        if config.getoption("capture") == "no" or (
                named and len(named) <= 3 and all(path.is_file() for path in named)):
            return 0
        return min(4, (os.cpu_count() or 1) + 1)


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


class DemoTemplate:
    """``manage.py demo``, run once per session and handed to every test that needs it.

    Each variant (``--no-wargame``: the corpus project with its patches proposed; the whole
    demo: real wargames, a model, an A/B report, a second project) is built once by the real
    command, in a transaction that is rolled back, in a data folder of its own: its rows are
    kept as a ``dumpdata`` fixture, its git repositories stay on disk. A test gets a copy of
    the data folder (its repositories are its own to merge into and branch from) and the rows
    inserted as ``loaddata`` would (a server process: ``manage.py loaddata``), every path in
    them pointing at its copy.
    """

    #: The apps whose rows the demo writes (every app of ours; none has rows from migrations).
    APPS = ("core", "advisories", "inventory", "reviews", "wargaming", "ml", "ab_testing",
            "decisions", "notifications", "console", "demo")

    def __init__(self, root, blocker) -> None:
        self.root, self.blocker = root, blocker
        self.built: dict[bool, tuple] = {}
        self.loads = 0

    def _models(self):
        from django.apps import apps

        return [model for label in self.APPS if label in {a.label for a in apps.get_app_configs()}
                for model in apps.get_app_config(label).get_models()]

    def _build(self, wargame: bool) -> tuple:
        from django.core.cache import cache
        from django.core.management import call_command
        from django.db import transaction
        from django.test.utils import override_settings

        folder = self.root / ("full" if wargame else "corpus")
        folder.mkdir()
        output, rows = io.StringIO(), io.StringIO()
        with self.blocker.unblock():
            present = [m._meta.label for m in self._models() if m._base_manager.exists()]
            if present:  # they would be dumped as the demo's
                pytest.fail(f"the demo is built on a database without rows of ours: {present}")
            with override_settings(IMMUNE_DATA_DIR=str(folder)), transaction.atomic():
                call_command("demo", *([] if wargame else ["--no-wargame"]), stdout=output)
                call_command("dumpdata", *[m._meta.label for m in self._models()],
                             use_base_manager=True, stdout=rows)
                transaction.set_rollback(True)
        if hasattr(cache, "delete_pattern"):  # what the build cached is no test's business
            cache.delete_pattern("*")
        else:
            cache.clear()
        return folder, rows.getvalue(), output.getvalue()

    def variant(self, wargame: bool) -> tuple:
        """(data folder, rows, output) of the variant, built on first use."""
        if wargame not in self.built:
            self.built[wargame] = self._build(wargame)
        return self.built[wargame]

    def copy(self, folder, *, wargame: bool = False) -> tuple:
        """The demo's data folder copied into ``folder``; returns (a ``loaddata`` fixture of
        its rows, the demo's output), both naming ``folder`` where the build's folder was."""
        import shutil
        from pathlib import Path

        built, rows, output = self.variant(wargame)
        shutil.copytree(built, folder, symlinks=True, dirs_exist_ok=True)
        self.loads += 1
        fixture = Path(self.root) / f"rows-{self.loads}.json"
        fixture.write_text(rows.replace(str(built), str(folder)))
        return fixture, output.replace(str(built), str(folder))

    def load(self, folder, *, wargame: bool = False) -> str:
        """As :meth:`copy`, with the rows inserted into the test's database; returns the
        demo's output."""
        fixture, output = self.copy(folder, wargame=wargame)
        try:
            self._insert(fixture.read_text())
        finally:
            fixture.unlink()
        return output

    @staticmethod
    def _insert(rows: str) -> None:
        """What ``loaddata`` does (the rows saved raw, as dumped; constraints checked;
        sequences reset) with one INSERT per table instead of an UPDATE and an INSERT per row."""
        from collections import defaultdict

        from django.core import serializers
        from django.core.management.color import no_style
        from django.db import connection, transaction

        tables = defaultdict(list)
        for item in serializers.deserialize("json", rows):
            obj = item.object
            if obj._meta.parents:
                raise NotImplementedError(f"{obj._meta.label} inherits: insert its parent too")
            tables[type(obj)].append(obj)
            for name, pks in item.m2m_data.items():
                through = obj._meta.get_field(name).remote_field.through
                field = obj._meta.get_field(name)
                source = through._meta.get_field(field.m2m_field_name()).attname
                target = through._meta.get_field(field.m2m_reverse_name()).attname
                tables[through] += [through(**{source: obj.pk, target: pk}) for pk in pks]
        with transaction.atomic(), connection.constraint_checks_disabled():
            for model, objs in tables.items():
                fields = [f for f in model._meta.local_concrete_fields
                          if not f.generated and not (f.primary_key and objs[0].pk is None)]
                size = connection.ops.bulk_batch_size(fields, objs) or len(objs)
                for start in range(0, len(objs), size):
                    model._base_manager._insert(objs[start:start + size], fields=fields,
                                                raw=True)
            connection.check_constraints(table_names=[m._meta.db_table for m in tables])
            with connection.cursor() as cursor:
                for sql in connection.ops.sequence_reset_sql(no_style(), list(tables)):
                    cursor.execute(sql)


@pytest.fixture(scope="session")
def demo_template(django_db_setup, django_db_blocker, tmp_path_factory, _celery_in_process,
                  _shared_wargame_environments):
    """The demo, built once per session (:class:`DemoTemplate`). The ``--no-wargame``
    variant is built here, before any test's fixtures could change a setting it depends on;
    the whole demo on first use (its two users change none)."""
    template = DemoTemplate(tmp_path_factory.mktemp("demo-template"), django_db_blocker)
    template.variant(wargame=False)
    return template


@pytest.fixture
def demo(db, settings, tmp_path, demo_template):
    """``manage.py demo --no-wargame`` in ``tmp_path`` (the data folder): the bundled
    advisories, the demo repository scanned and every patch proposed; the demo Project."""
    from apps.inventory.models import Project

    settings.IMMUNE_DATA_DIR = tmp_path
    demo_template.load(tmp_path)
    return Project.objects.get(name="demo")


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
