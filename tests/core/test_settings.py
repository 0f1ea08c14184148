"""Settings come from the environment; production refuses an unsafe configuration."""

import pytest

from tests.helpers import last_json_line, run_django

GOOD_PRODUCTION = {
    "DJANGO_ENV": "production",
    "SECRET_KEY": "k" * 20 + "-a-long-random-production-secret-value",
    "ALLOWED_HOSTS": "immune.example.org",
    "DEBUG": "false",
}


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"DEBUG": "true"}, "DEBUG"),
        ({"SECRET_KEY": ""}, "SECRET_KEY"),
        ({"SECRET_KEY": "insecure-development-key-change-me"}, "SECRET_KEY"),
        ({"ALLOWED_HOSTS": ""}, "ALLOWED_HOSTS"),
    ],
)
def test_production_refuses_unsafe_setting_and_names_it(override, named):
    result = run_django("print('started')", env={**GOOD_PRODUCTION, **override})
    assert result.returncode != 0
    assert "started" not in result.stdout
    assert "ImproperlyConfigured" in result.stderr
    assert named in result.stderr.splitlines()[-1]


def test_production_names_every_problem_at_once():
    env = {"DJANGO_ENV": "production", "DEBUG": "true", "SECRET_KEY": "", "ALLOWED_HOSTS": ""}
    result = run_django("print('started')", env=env)
    last = result.stderr.splitlines()[-1]
    assert all(name in last for name in ("DEBUG", "SECRET_KEY", "ALLOWED_HOSTS"))


def test_production_turns_security_settings_on():
    code = """
from django.conf import settings as s
from django.test import Client
r = Client().get('/health', secure=True, HTTP_HOST='immune.example.org')
print(json.dumps({'status': r.status_code, 'hsts': r.headers.get('Strict-Transport-Security'),
  'nosniff': r.headers.get('X-Content-Type-Options'), 'frame': r.headers.get('X-Frame-Options'),
  'referrer': r.headers.get('Referrer-Policy'), 'session_secure': s.SESSION_COOKIE_SECURE,
  'csrf_secure': s.CSRF_COOKIE_SECURE, 'debug': s.DEBUG, 'log_format': s.LOG_FORMAT}))
"""
    result = run_django(code, env=GOOD_PRODUCTION)
    assert result.returncode == 0, result.stderr
    out = last_json_line(result.stdout)
    assert out["status"] == 200
    assert out["hsts"].startswith("max-age=31536000")
    assert out["nosniff"] == "nosniff"
    assert out["frame"] == "DENY"
    assert out["referrer"] == "same-origin"
    assert out["session_secure"] and out["csrf_secure"]
    assert out["debug"] is False
    assert out["log_format"] == "json"


def test_embedded_default_with_nothing_set(tmp_path):
    code = """
from django.conf import settings as s
from immune.celery import app
db = s.DATABASES['default']
print(json.dumps({'db': db['ENGINE'], 'name': str(db['NAME']),
  'cache': s.CACHES['default']['BACKEND'], 'layer': s.CHANNEL_LAYERS['default']['BACKEND'],
  'eager': app.conf.task_always_eager, 'broker': app.conf.broker_url}))
"""
    env = {"DATABASE_URL": "", "REDIS_URL": "", "IMMUNE_DATA_DIR": str(tmp_path),
           "CELERY_BROKER_URL": "", "CELERY_TASK_ALWAYS_EAGER": ""}
    result = run_django(code, env=env)
    assert result.returncode == 0, result.stderr
    out = last_json_line(result.stdout)
    assert out["db"].endswith("sqlite3")
    assert out["name"] == str(tmp_path / "immune.sqlite3")
    assert out["cache"].endswith("LocMemCache")
    assert out["layer"] == "channels.layers.InMemoryChannelLayer"
    assert out["eager"] is True
    assert out["broker"].startswith("memory://")


def test_urls_switch_to_postgres_and_redis():
    code = """
from django.conf import settings as s
from immune.celery import app
print(json.dumps({'db': s.DATABASES['default']['ENGINE'], 'host': s.DATABASES['default']['HOST'],
  'cache': s.CACHES['default']['BACKEND'], 'layer': s.CHANNEL_LAYERS['default']['BACKEND'],
  'eager': app.conf.task_always_eager, 'broker': app.conf.broker_url,
  'backend': app.conf.result_backend}))
"""
    env = {"DATABASE_URL": "postgres://u@db.internal:5432/immune",
           "REDIS_URL": "redis://cache.internal:6379/0",
           "CELERY_BROKER_URL": "", "CELERY_RESULT_BACKEND": "", "CELERY_TASK_ALWAYS_EAGER": ""}
    result = run_django(code, env=env)
    assert result.returncode == 0, result.stderr
    out = last_json_line(result.stdout)
    assert out["db"] == "django_prometheus.db.backends.postgresql"
    assert out["host"] == "db.internal"
    assert out["cache"] == "apps.core.cache.ResilientRedisCache"
    assert out["layer"] == "channels_redis.core.RedisChannelLayer"
    assert out["eager"] is False
    assert out["broker"] == out["backend"] == "redis://cache.internal:6379/0"


def test_unsupported_database_url_is_refused():
    result = run_django("print('started')", env={"DATABASE_URL": "mysql://root@127.0.0.1/x"})
    assert result.returncode != 0
    assert "DATABASE_URL" in result.stderr.splitlines()[-1]


@pytest.mark.parametrize(("value", "expected"), [
    (None, [20000, 20, 50]),  # the default: the queue's p95 depends on it
    ("5000,15,25", [5000, 15, 25]),
    ("", [700, 10, 10]),  # empty: Python's own thresholds
])
def test_gc_thresholds_are_set_when_django_starts(value, expected):
    env = {} if value is None else {"GC_THRESHOLDS": value}
    code = "import gc\nprint(json.dumps({'thresholds': list(gc.get_threshold())}))\n"
    result = run_django(code, env=env)
    assert result.returncode == 0, result.stderr
    assert last_json_line(result.stdout)["thresholds"] == expected


def test_the_asgi_entry_point_freezes_what_start_up_loaded():
    code = "import gc\nimport immune.asgi\nprint(json.dumps({'frozen': gc.get_freeze_count()}))\n"
    result = run_django(code)
    assert result.returncode == 0, result.stderr
    assert last_json_line(result.stdout)["frozen"] > 10_000
