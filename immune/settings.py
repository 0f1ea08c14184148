"""Settings of immune.

Everything is configured here; the environment (read only through
``immune.env``) decides what differs between a laptop and production.
With nothing set the project runs on an embedded default: SQLite in the data
folder, a local-memory cache, the in-memory channel layer and Celery tasks run
in-process. ``DATABASE_URL`` switches to PostgreSQL, ``REDIS_URL`` moves the
cache, the channel layer and the Celery broker/result backend to Redis.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

from csp.constants import NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured

from immune.env import (
    BASE_DIR,
    DATA_DIR,
    DATABASE_URL,
    DEFAULT_SECRET_KEY,
    DJANGO_ENV,
    IS_PRODUCTION,
    REDIS_URL,
    env,
)
from immune.logconfig import build_logging_config

# --- Core ---------------------------------------------------------------------------------
SECRET_KEY = env.str("SECRET_KEY", default=DEFAULT_SECRET_KEY)
DEBUG = env.bool("DEBUG", default=not IS_PRODUCTION)
ALLOWED_HOSTS = env.list(
    "ALLOWED_HOSTS", default=[] if IS_PRODUCTION else ["127.0.0.1", "localhost", "testserver"]
)
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])


def _production_problems() -> list[str]:
    """Each entry names one setting that makes a production start unsafe."""
    problems = []
    if DEBUG:
        problems.append("DEBUG must be off in production (unset DEBUG or set DEBUG=false)")
    if not SECRET_KEY or SECRET_KEY == DEFAULT_SECRET_KEY or len(SECRET_KEY) < 32:
        problems.append(
            "SECRET_KEY is missing, the development default or shorter than 32 characters"
        )
    if not ALLOWED_HOSTS:
        problems.append("ALLOWED_HOSTS is empty (a comma-separated list of host names)")
    return problems


if IS_PRODUCTION and (_problems := _production_problems()):
    raise ImproperlyConfigured(
        "immune refuses to start with DJANGO_ENV=production: " + "; ".join(_problems)
    )

INSTALLED_APPS = [
    # daphne first: its runserver serves HTTP and WebSocket through immune.asgi.
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "csp",
    "channels",
    "django_prometheus",
    "apps.core",
    "apps.advisories",
    "apps.inventory",
    # In dependency order (docs/architecture.md): each app imports only those listed before it
    # in this list, and hooks subscribe in this order.
    "apps.reviews",
    "apps.wargaming",
    "apps.ml",
    "apps.ab_testing",
    "apps.decisions",
    "apps.notifications",
    "apps.console",
    "apps.demo",
]

MIDDLEWARE = [
    # django-prometheus wants its before/after middleware first and last.
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "apps.core.middleware.RequestIdMiddleware",
    # The client's address from X-Forwarded-For of TRUSTED_PROXIES only (apps/core/proxies.py).
    "apps.core.proxies.TrustedProxyMiddleware",
    # NUL or broken UTF-8 in path or query: 400; a body over API_MAX_BODY_BYTES: 413 unread.
    "apps.core.guards.RequestGuardMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Content-Security-Policy on every response (django-csp; CONTENT_SECURITY_POLICY below).
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Turns django-ratelimit's Ratelimited into RATELIMIT_VIEW's 429 instead of a 403.
    "django_ratelimit.middleware.RatelimitMiddleware",
    # A database that is down is a 503 with Retry-After (apps/core/unavailable.py).
    "apps.core.unavailable.UnavailableMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

# Static files from the web process itself on every profile (issue 15: under uvicorn the
# development profile answered 404 for the console's script and Swagger UI, since only
# runserver serves them): collected, hashed and compressed in production; straight from
# the apps' and project's static folders otherwise (WHITENOISE_USE_FINDERS below).
MIDDLEWARE.insert(MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1,
                  "whitenoise.middleware.WhiteNoiseMiddleware")

ROOT_URLCONF = "immune.urls"
WSGI_APPLICATION = "immune.wsgi.application"
ASGI_APPLICATION = "immune.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------------
if DATABASE_URL:
    _db = env.db_url_config(DATABASE_URL)
    if _db["ENGINE"] not in ("django.db.backends.postgresql", "django.db.backends.sqlite3"):
        raise ImproperlyConfigured(
            f"DATABASE_URL must be postgres:// or sqlite://, not {_db['ENGINE']}"
        )
else:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    _db = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(DATA_DIR / "immune.sqlite3")}

# Wrap the engine with django-prometheus so query counts and latencies are exported.
_db["ENGINE"] = _db["ENGINE"].replace("django.db.backends.", "django_prometheus.db.backends.")
_db.setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
_db["CONN_HEALTH_CHECKS"] = True
if "postgresql" in _db["ENGINE"]:
    _db.setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
    #: A connection pool per process (psycopg_pool): under ASGI every request thread would
    #: otherwise open, and keep, a connection of its own until PostgreSQL refuses more.
    #: Bound per process = DATABASE_POOL_MAX_SIZE (docs/configuration.md).
    if env.bool("DATABASE_POOL", default=True):
        _db["CONN_MAX_AGE"] = 0  # the pool keeps connections; Django must not
        _db["OPTIONS"]["pool"] = {
            "min_size": env.int("DATABASE_POOL_MIN_SIZE", default=1),
            "max_size": env.int("DATABASE_POOL_MAX_SIZE", default=10),
            "timeout": env.float("DATABASE_POOL_TIMEOUT_S", default=10.0),
        }
else:
    # Concurrent writers serialise instead of failing with "database is locked" (issue 13):
    # every transaction takes the write lock when it begins (IMMEDIATE), so none is refused
    # at once upgrading a read lock, and waits up to ``timeout`` s for it (the busy timeout);
    # WAL lets reads go on beside the one writer. docs/configuration.md, "SQLite".
    _sqlite = _db.setdefault("OPTIONS", {})
    _sqlite.setdefault("timeout", 20)
    _sqlite.setdefault("transaction_mode", "IMMEDIATE")
    _sqlite.setdefault("init_command",
                       "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache, channel layer, Celery ---------------------------------------------------------
if REDIS_URL:
    CACHES = {
        "default": {
            # django-redis with django-prometheus's counters, behind the "redis" circuit
            # breaker: while Redis is down a read is a miss, not a 500 (apps/core/cache.py).
            "BACKEND": "apps.core.cache.ResilientRedisCache",
            "LOCATION": REDIS_URL,
            # Separate prefixes let several deployments (or a test run) share one Redis.
            "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default="") or "immune-cache",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 3, "SOCKET_TIMEOUT": 3},
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # The layer waits for messages with a 5 s blocking pop; redis-py's default 5 s
            # socket timeout cut it off, and with it every idle WebSocket (issue 12).
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 30,
                                  "socket_connect_timeout": 3, "health_check_interval": 25,
                                  "retry_on_timeout": True}],
                       "prefix": env.str("CHANNEL_LAYER_PREFIX", default="") or "immune"},
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django_prometheus.cache.backends.locmem.LocMemCache",
            "LOCATION": "immune",
        }
    }
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# An empty variable counts as unset, so `FOO=` in a compose file means "the default".
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="") or REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = (
    env.str("CELERY_RESULT_BACKEND", default="") or REDIS_URL or "cache+memory://"
)
# Without a broker the tasks run in-process, so the embedded default needs no worker.
CELERY_TASK_ALWAYS_EAGER = (
    env.bool("CELERY_TASK_ALWAYS_EAGER")
    if env.str("CELERY_TASK_ALWAYS_EAGER", default="")
    else CELERY_BROKER_URL.startswith("memory://")
)
CELERY_TASK_EAGER_PROPAGATES = True
#: The queue tasks go to (and a worker takes with -Q): deployments sharing one Redis keep
#: apart by naming their own.
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="") or "celery"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_EXPIRES = timedelta(days=1)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_TIMEOUT = 3
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TIMEZONE = "UTC"
# Schedules (spec, Users: Celery beat). Every task is idempotent, so a late or doubled
# run does no harm.
CELERY_BEAT_SCHEDULE: dict = {
    "advisories-sync-hourly": {"task": "advisories.sync", "schedule": timedelta(hours=1)},
    "projects-rescan-daily": {"task": "inventory.rescan_all", "schedule": timedelta(days=1)},
}

# --- Auth ---------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "admin:login"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.SearchFilter",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "apps.core.pagination.PageNumberPagination",
    "PAGE_SIZE": env.int("API_PAGE_SIZE", default=50),
    # Roles and error responses on every operation (apps/core/schema.py).
    "DEFAULT_SCHEMA_CLASS": "apps.core.schema.ImmuneAutoSchema",
    "EXCEPTION_HANDLER": "apps.core.exceptions.api_exception_handler",
    # JSON without control characters, read up to API_MAX_BODY_BYTES (apps/core/parsers.py).
    "DEFAULT_PARSER_CLASSES": [
        "apps.core.parsers.StrictJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    # Throttles key on REMOTE_ADDR alone, which TrustedProxyMiddleware (and uvicorn, given
    # the same TRUSTED_PROXIES) set from X-Forwarded-For only for a trusted proxy; DRF's
    # default (None) would key on the whole X-Forwarded-For a client sends.
    "NUM_PROXIES": 0,
    "DEFAULT_THROTTLE_CLASSES": [
        # DRF's, failing open with a log line while the cache is down (issue 12).
        "apps.core.throttling.UserRateThrottle",
        "apps.core.throttling.AnonRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "user": env.str("API_THROTTLE_USER", default="1200/minute"),
        "anon": env.str("API_THROTTLE_ANON", default="60/minute"),
    },
}

SPECTACULAR_SETTINGS = {
    "TITLE": "immune API",
    "DESCRIPTION": "Adaptive Immune System: advisories, projects, APVs, patches, decisions.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and the docs need a login like the rest of the API (issue 13).
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # A scan's "status" (ok/partial) beside the APV and patch states of the same field name.
    "ENUM_NAME_OVERRIDES": {"ScanResultStatusEnum": [("ok", "ok"), ("partial", "partial")],
                            "APVStatusEnum": "apps.reviews.models.APVStatus",
                            "PatchStrategyEnum": "apps.reviews.models.PatchStrategy",
                            "ProposableStrategyEnum": ["code_patch", "dependency_upgrade"],
                            "PatchStateEnum": "apps.reviews.models.PatchState",
                            "RunStateEnum": "apps.wargaming.models.RunState",
                            "VerdictEnum": "apps.wargaming.models.Verdict",
                            "DecisionTypeEnum": "apps.decisions.models.DecisionType",
                            "OutcomeEnum": "apps.decisions.models.Outcome",
                            "RouteEnum": "apps.ml.models.Route",
                            "SeverityEnum": "apps.advisories.models.Severity"},
}

# django-ratelimit guards the login forms; it needs a cache shared by all processes,
# which the local-memory default is not (fine on one process, hence silenced there).
RATELIMIT_USE_CACHE = "default"
RATELIMIT_VIEW = "apps.core.views.ratelimited"
#: The client address by TRUSTED_PROXIES, as the throttles and the audit trail see it.
RATELIMIT_IP_META_KEY = "apps.core.proxies.ratelimit_ip"
#: With the cache down, login attempts are not counted rather than every login refused.
RATELIMIT_FAIL_OPEN = True
LOGIN_RATE_LIMIT = env.str("LOGIN_RATE_LIMIT", default="10/m")
SILENCED_SYSTEM_CHECKS = [] if REDIS_URL else ["django_ratelimit.E003", "django_ratelimit.W001"]

#: Bearer token Prometheus presents to /metrics; staff sessions may read it too.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
#: Port of a Celery worker's own /metrics (apps/core/worker_metrics.py); 0 turns it off.
WORKER_METRICS_PORT = env.int("WORKER_METRICS_PORT", default=0)
WORKER_METRICS_ADDR = env.str("WORKER_METRICS_ADDR", default="0.0.0.0")  # noqa: S104

# --- Internationalisation and static files -------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles"))
if not IS_PRODUCTION:
    # No collectstatic in development: WhiteNoise finds files where runserver would, and
    # an absent STATIC_ROOT is expected, not worth a warning at every start.
    WHITENOISE_USE_FINDERS = True
    WHITENOISE_AUTOREFRESH = DEBUG
    import warnings

    warnings.filterwarnings("ignore", message="No directory at", module="whitenoise.base")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if IS_PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

# --- Security -----------------------------------------------------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
#: Largest request body accepted (bytes); a bigger declared Content-Length is refused with
#: 413 before the body is read (apps/core/guards.py), and Django's own form limit follows.
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", default=1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_BODY_BYTES
#: Proxies (addresses or CIDR networks, comma-separated; "*" trusts every peer) whose
#: X-Forwarded-For is believed. Empty, the default: none, and the client address is the
#: peer's. The same variable is uvicorn's FORWARDED_ALLOW_IPS (docs/configuration.md), so
#: the server, the rate limits and the audit trail agree on who the client is.
TRUSTED_PROXIES = env.list("FORWARDED_ALLOW_IPS", default=[])
#: Content-Security-Policy (django-csp): scripts only from our own origin, no inline script
#: anywhere (the console's, the admin's, Swagger UI's and ReDoc's come from static files).
#: Inline styles stay allowed: the admin, the console's severity badges and ReDoc set them.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "font-src": [SELF, "data:"],
        "connect-src": [SELF],
        "worker-src": [SELF, "blob:"],  # ReDoc renders in a worker built from a blob
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}
if IS_PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    # Health probes come from the orchestrator over plain HTTP inside the cluster.
    SECURE_REDIRECT_EXEMPT = [r"^health", r"^metrics$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)

# --- Logging ------------------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOG_FORMAT = env.str("LOG_FORMAT", default="json" if IS_PRODUCTION else "console")
LOGGING_CONFIG = None  # configured once below, so structlog and stdlib share handlers
LOGGING = build_logging_config(fmt=LOG_FORMAT, level=LOG_LEVEL,
                               secrets=[SECRET_KEY, METRICS_TOKEN])

import logging.config  # noqa: E402  (configured after every setting it depends on)

logging.config.dictConfig(LOGGING)

# --- immune -------------------------------------------------------------------------------
IMMUNE_ENV = DJANGO_ENV
#: CPython's garbage-collector thresholds for every immune process (gen0, gen1, gen2), set
#: when Django starts; empty keeps Python's (700, 10, 10). Rendering 1,000 queue rows makes
#: tens of thousands of short-lived objects, and with the default gen0 of 700 a full
#: collection lands in some renders: p95 373 ms against a median of 174 ms
#: (benchmarks/queue_render.py, docs/performance.md).
GC_THRESHOLDS = tuple(int(v) for v in env.list("GC_THRESHOLDS", default=["20000", "20", "50"])
                      if v.strip())
IMMUNE_DATA_DIR = DATA_DIR
#: Health checks slower than this (ms) report a component as degraded.
HEALTH_DEGRADED_MS = env.float("HEALTH_DEGRADED_MS", default=500.0)
#: Components whose failure makes /health/ready answer 503. Only the database: with Redis
#: down immune still serves reads and decisions (degraded), so it stays in rotation.
HEALTH_REQUIRED_COMPONENTS = env.list("HEALTH_REQUIRED_COMPONENTS", default=["database"])
#: Circuit breakers (apps/core/breakers.py): consecutive failures that open one, and
#: seconds it stays open before the next call is a trial.
BREAKER_REDIS_FAILURES = env.int("BREAKER_REDIS_FAILURES", default=3)
BREAKER_REDIS_RESET_S = env.float("BREAKER_REDIS_RESET_S", default=5.0)
BREAKER_FORGE_FAILURES = env.int("BREAKER_FORGE_FAILURES", default=5)
BREAKER_FORGE_RESET_S = env.float("BREAKER_FORGE_RESET_S", default=60.0)
BREAKER_OSV_FAILURES = env.int("BREAKER_OSV_FAILURES", default=3)
BREAKER_OSV_RESET_S = env.float("BREAKER_OSV_RESET_S", default=300.0)
BREAKER_EVIDENCE_FAILURES = env.int("BREAKER_EVIDENCE_FAILURES", default=3)
BREAKER_EVIDENCE_RESET_S = env.float("BREAKER_EVIDENCE_RESET_S", default=300.0)

# --- Pipeline -----------------------------------------------------------------------------
#: Days from first seen to SLA due, by severity (spec: critical 7, high 30, medium 90, low 120).
APV_SLA_DAYS = {
    "critical": 7, "high": 30, "medium": 90, "low": 120, "none": 120, "unknown": 90,
    **{k: int(v) for k, v in env.dict("APV_SLA_DAYS", default={}).items()},
}
#: Advisory feeds beat re-imports hourly (folders, files, zips or URLs; comma-separated).
ADVISORY_SOURCES = env.list(
    "ADVISORY_SOURCES",
    default=["https://osv-vulnerabilities.storage.googleapis.com/PyPI/all.zip"]
    if IS_PRODUCTION else [],
)
#: Advisory import caps (docs/advisories.md, "Bad input"): a download; one document (a file,
#: a zip member, a downloaded JSON/YAML); one record as canonical JSON; records in one
#: document; nesting of a document or record. What exceeds one is a listed failure.
ADVISORY_MAX_DOWNLOAD_BYTES = env.int("ADVISORY_MAX_DOWNLOAD_BYTES", default=512 * 1024 * 1024)
ADVISORY_MAX_FILE_BYTES = env.int("ADVISORY_MAX_FILE_BYTES", default=16 * 1024 * 1024)
ADVISORY_MAX_RECORD_BYTES = env.int("ADVISORY_MAX_RECORD_BYTES", default=1024 * 1024)
ADVISORY_MAX_RECORDS_PER_FILE = env.int("ADVISORY_MAX_RECORDS_PER_FILE", default=10_000)
ADVISORY_MAX_DEPTH = env.int("ADVISORY_MAX_DEPTH", default=32)
ADVISORY_MAX_YAML_NODES = env.int("ADVISORY_MAX_YAML_NODES", default=100_000)
#: Exploitation evidence fetched daily by beat (docs/advisories.md, "Exploitation evidence"):
#: FIRST's EPSS CSV (e.g. https://epss.empiricalsecurity.com/epss_scores-current.csv.gz) and
#: CISA's KEV JSON (https://www.cisa.gov/sites/default/files/feeds/known_exploited_vulnerabilities.json).
#: Empty: the job is off (the import_epss/import_kev commands still work on files).
EPSS_URL = env.str("EPSS_URL", default="")
KEV_URL = env.str("KEV_URL", default="")
EVIDENCE_TIMEOUT_S = env.float("EVIDENCE_TIMEOUT_S", default=60.0)
if EPSS_URL:
    CELERY_BEAT_SCHEDULE["advisories-epss-daily"] = {
        "task": "advisories.import_epss", "schedule": timedelta(days=1)}
if KEV_URL:
    CELERY_BEAT_SCHEDULE["advisories-kev-daily"] = {
        "task": "advisories.import_kev", "schedule": timedelta(days=1)}
#: NVD's CVSS/CWE/KEV data per CVE (docs/nvd.md): `import_nvd` reads files; the beat job
#: `advisories.sync_nvd` fetches NVD's "modified" feed (NVD_SYNC=feed) or walks the CVE API
#: 2.0 (NVD_SYNC=api; 5 requests per 30 s, 50 with NVD_API_KEY). Empty: the job is off.
NVD_SYNC = env.str("NVD_SYNC", default="")
if NVD_SYNC not in ("", "feed", "api"):
    raise ImproperlyConfigured(f"NVD_SYNC must be empty, 'feed' or 'api', not {NVD_SYNC!r}")
NVD_FEED_URL = env.str(
    "NVD_FEED_URL", default="https://nvd.nist.gov/feeds/json/cve/2.0/nvdcve-2.0-modified.json.gz")
NVD_API_URL = env.str("NVD_API_URL", default="https://services.nvd.nist.gov/rest/json/cves/2.0")
NVD_API_KEY = env.str("NVD_API_KEY", default="")
NVD_SYNC_INTERVAL_S = env.int("NVD_SYNC_INTERVAL_S", default=2 * 3600)
NVD_TIMEOUT_S = env.float("NVD_TIMEOUT_S", default=60.0)
#: Caps of one NVD file, decompressed, and of one CVE record in it (streamed: memory holds
#: one record); a file past either is refused whole.
NVD_MAX_FILE_BYTES = env.int("NVD_MAX_FILE_BYTES", default=4 * 1024 * 1024 * 1024)
NVD_MAX_RECORD_BYTES = env.int("NVD_MAX_RECORD_BYTES", default=16 * 1024 * 1024)
BREAKER_NVD_FAILURES = env.int("BREAKER_NVD_FAILURES", default=3)
BREAKER_NVD_RESET_S = env.float("BREAKER_NVD_RESET_S", default=600.0)
if NVD_SYNC:
    CELERY_BEAT_SCHEDULE["advisories-nvd"] = {
        "task": "advisories.sync_nvd", "schedule": timedelta(seconds=NVD_SYNC_INTERVAL_S)}

# --- Scanning hostile repositories (issue 13; docs/apv.md) ----------------------------------
#: A manifest larger than this is refused from its size, unread; the rest is scanned.
SCAN_MAX_MANIFEST_BYTES = env.int("SCAN_MAX_MANIFEST_BYTES", default=5 * 1024 * 1024)
#: Dependencies one manifest (with its -r/-c includes) may declare; over it, it is skipped.
SCAN_MAX_DEPENDENCIES = env.int("SCAN_MAX_DEPENDENCIES", default=20_000)
#: Dependencies of a whole project; manifests that would pass it are skipped.
SCAN_MAX_PROJECT_DEPENDENCIES = env.int("SCAN_MAX_PROJECT_DEPENDENCIES", default=100_000)
#: Manifests read per project; those after it (in path order) are skipped.
SCAN_MAX_MANIFESTS = env.int("SCAN_MAX_MANIFESTS", default=1_000)
#: Entries (files, folders, links) of the exported tree; a larger tree is not scanned.
SCAN_MAX_TREE_ENTRIES = env.int("SCAN_MAX_TREE_ENTRIES", default=200_000)

# --- Patches and forge ---------------------------------------------------------------------
#: Identity of the commits immune makes on patch branches and merges.
IMMUNE_GIT_NAME = env.str("IMMUNE_GIT_NAME", default="immune")
IMMUNE_GIT_EMAIL = env.str("IMMUNE_GIT_EMAIL", default="immune@localhost")
#: With a token and a project's forge_repository, branches become GitHub pull requests.
GITHUB_TOKEN = env.str("GITHUB_TOKEN", default="")
GITHUB_API_URL = env.str("GITHUB_API_URL", default="https://api.github.com")
#: Beat checks for expired risk acceptances this often.
RISK_EXPIRY_CHECK = timedelta(minutes=env.int("RISK_EXPIRY_CHECK_MINUTES", default=15))
CELERY_BEAT_SCHEDULE["decisions-expire-risk-acceptances"] = {
    "task": "decisions.expire_risk_acceptances", "schedule": RISK_EXPIRY_CHECK,
}
# --- Decisions in two steps (docs/patches-and-decisions.md, "Two steps") --------------------
#: Attempts of a decision's git/forge action after the first, on transient failures.
DECISION_APPLY_RETRIES = env.int("DECISION_APPLY_RETRIES", default=5)
#: How long one attempt may hold a decision before another worker may take it over.
DECISION_APPLY_LEASE_S = env.int("DECISION_APPLY_LEASE_S", default=600)
#: How long a decision sent with an Idempotency-Key waits for the request first sent with
#: that key before answering 409 idempotency_key_in_progress.
DECISION_IDEMPOTENCY_WAIT_S = env.int("DECISION_IDEMPOTENCY_WAIT_S", default=30)
#: A decision still waiting for its first attempt after this long is queued again (beat).
DECISION_REQUEUE_AFTER_S = env.int("DECISION_REQUEUE_AFTER_S", default=60)
CELERY_BEAT_SCHEDULE["decisions-requeue-stale"] = {
    "task": "decisions.requeue_stale", "schedule": timedelta(minutes=1),
}
#: Wargame every proposed patch automatically (a Celery job per patch). Off by default
#: outside production, where tasks run in-process and a wargame installs packages.
WARGAME_AUTO = env.bool("WARGAME_AUTO", default=IS_PRODUCTION)

# --- Wargaming -----------------------------------------------------------------------------
#: Folders (":"-separated) of the operator's own PoCs, indexed beside the built-in library.
WARGAME_EXPLOIT_DIRS = [p for p in env.str("WARGAME_EXPLOIT_DIRS", default="").split(":") if p]
#: A pip-style constraints file applied when building sdists (e.g. "Cython<3" for PyYAML 5.3.1).
WARGAME_PIP_CONSTRAINTS = env.str(
    "WARGAME_PIP_CONSTRAINTS", default=str(BASE_DIR / "apps" / "wargaming" / "constraints.txt"))
WARGAME_ENV_DIR = env.str("WARGAME_ENV_DIR", default=str(DATA_DIR / "wargame" / "envs"))
WARGAME_PHASE_TIMEOUT_S = env.float("WARGAME_PHASE_TIMEOUT_S", default=30.0)
WARGAME_RUN_TIMEOUT_S = env.float("WARGAME_RUN_TIMEOUT_S", default=300.0)
WARGAME_MEMORY_MB = env.int("WARGAME_MEMORY_MB", default=1536)
WARGAME_MAX_PROCESSES = env.int("WARGAME_MAX_PROCESSES", default=128)
#: Size of each private tmpfs of a phase (/work, /tmp, /var/tmp, /dev/shm); also its disk cap.
WARGAME_TMPFS_MB = env.int("WARGAME_TMPFS_MB", default=256)
#: Memory for a whole environment build (uv and the build backends it runs).
WARGAME_BUILD_MEMORY_MB = env.int("WARGAME_BUILD_MEMORY_MB", default=4096)
#: Root-only folder for the sandboxes' control files (default: the system temp folder).
WARGAME_WORK_DIR = env.str("WARGAME_WORK_DIR", default="")
#: Run wargames without bubblewrap (rlimits and a scrubbed environment only). Off: a machine
#: without the sandbox ends every wargame "error" ("sandbox unavailable") instead.
WARGAME_ALLOW_UNSANDBOXED = env.bool("WARGAME_ALLOW_UNSANDBOXED", default=False)
#: Host uid (and gid) the sandboxes run as when immune runs as root; a dedicated, otherwise
#: unused uid is best (another process of that uid could ptrace into a sandbox).
WARGAME_SANDBOX_UID = env.int("WARGAME_SANDBOX_UID", default=65534)
#: Disk of an environment build: its target and its private uv cache are tmpfs of this size
#: (charged to the build's memory), and the built environment is refused above it.
WARGAME_BUILD_DISK_MB = env.int("WARGAME_BUILD_DISK_MB", default=2048)
#: Entries (files, folders, links) a built environment may hold: each is an inode on disk.
WARGAME_BUILD_MAX_FILES = env.int("WARGAME_BUILD_MAX_FILES", default=100_000)
#: The bubblewrap executable (a name on PATH or a path).
WARGAME_BWRAP = env.str("WARGAME_BWRAP", default="bwrap")
#: The package index environment builds may reach (through the index proxy, nothing else).
WARGAME_INDEX_URL = env.str("WARGAME_INDEX_URL", default="https://pypi.org/simple")
#: Hosts the index proxy lets builds reach (the index's own host is always allowed).
WARGAME_INDEX_HOSTS = [h for h in env.str(
    "WARGAME_INDEX_HOSTS", default="files.pythonhosted.org").split(",") if h]
#: The "simple" index (PEP 503/691) a reviewer's upgrade target must be a release in
#: (apps/reviews/patching/releases.py); empty: versions are parsed, not looked up. In
#: production the wargame's index, which has to be reachable anyway.
PACKAGE_INDEX_URL = env.str("PACKAGE_INDEX_URL",
                            default=WARGAME_INDEX_URL if IS_PRODUCTION else "")
#: Interpreter of the wargame environments. It must be readable by the sandbox user
#: (``nobody`` when immune runs as root), so the system Python is preferred.
WARGAME_PYTHON = env.str("WARGAME_PYTHON", default="") or (
    "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable)

# --- ML-first and A/B testing ----------------------------------------------------------------
#: A patch goes straight to review when the active model is at least this sure either way.
ML_FIRST_THRESHOLD = env.float("ML_FIRST_THRESHOLD", default=0.8)
#: Training refuses with fewer labels than this in either class (effective / not effective).
ML_MIN_LABELS_PER_CLASS = env.int("ML_MIN_LABELS_PER_CLASS", default=5)
#: Beat retrains weekly once this many new labels arrived since the newest model version.
ML_RETRAIN_MIN_NEW_LABELS = env.int("ML_RETRAIN_MIN_NEW_LABELS", default=10)
#: Predictions are cached by (model version, feature hash) this long (seconds).
ML_PREDICTION_CACHE_S = env.int("ML_PREDICTION_CACHE_S", default=24 * 3600)
#: Share of ML-routed patches an enabled experiment also wargames (``ab_testing enable``
#: without --rate).
AB_TEST_RATE = env.float("AB_TEST_RATE", default=0.10)
#: The accuracy report is cached this long (seconds) unless a new result arrives.
AB_ACCURACY_CACHE_S = env.int("AB_ACCURACY_CACHE_S", default=300)
CELERY_BEAT_SCHEDULE["ml-retrain-weekly"] = {
    "task": "ml.retrain", "schedule": timedelta(days=7),
}

# --- Every wargame run ends (issue 11; docs/wargaming.md, docs/configuration.md) ------------
#: A run still ``running`` this long after WARGAME_RUN_TIMEOUT_S is presumed lost (its worker
#: died): the reaper ends it ``timeout`` and a redelivered task may run it again. The run
#: task's soft and hard time limits sit inside this grace (+½ and +¾ of it).
WARGAME_REAP_GRACE_S = env.float("WARGAME_REAP_GRACE_S", default=120.0)
#: A run still ``queued`` this long (nobody took its task) is enqueued again, once.
WARGAME_REQUEUE_AFTER_S = env.float("WARGAME_REQUEUE_AFTER_S", default=3600.0)
# Redis redelivers an unacknowledged task after the visibility timeout: it must exceed the
# longest run, or a healthy run would be handed to a second worker while it runs.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": int(WARGAME_RUN_TIMEOUT_S + WARGAME_REAP_GRACE_S + 600),
}
CELERY_BEAT_SCHEDULE["wargaming-reap"] = {
    "task": "wargaming.reap", "schedule": timedelta(minutes=1), "options": {"expires": 55},
}

# --- Notifications (issue 15; docs/notifications.md) -----------------------------------------
#: Django's email backend from one URL: smtp://user:password@host:587, smtp+tls://…,
#: smtp+ssl://…, consolemail:// (the default: messages printed to the log stream).
EMAIL_URL = env.str("EMAIL_URL", default="") or "consolemail://"
_email = env.email_url_config(EMAIL_URL)
EMAIL_BACKEND = _email["EMAIL_BACKEND"]
EMAIL_HOST = _email["EMAIL_HOST"] or "localhost"
EMAIL_PORT = _email["EMAIL_PORT"] or 25
EMAIL_HOST_USER = _email["EMAIL_HOST_USER"] or ""
EMAIL_HOST_PASSWORD = _email["EMAIL_HOST_PASSWORD"] or ""
EMAIL_USE_TLS = _email.get("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = _email.get("EMAIL_USE_SSL", False)
#: Seconds an SMTP connection or command may take.
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
NOTIFY_EMAIL_FROM = env.str("NOTIFY_EMAIL_FROM", default="immune@localhost")
#: Operator webhooks (http(s) only, comma-separated); they may embed tokens, so they are
#: never logged or stored, only their host. NOTIFY_WEBHOOK_EVENTS narrows what they get
#: ("all", a list of event names, or "none": only subscriptions choosing "webhook").
NOTIFY_WEBHOOK_URLS = env.list("NOTIFY_WEBHOOK_URLS", default=[])
NOTIFY_WEBHOOK_EVENTS = env.list("NOTIFY_WEBHOOK_EVENTS", default=["all"])
NOTIFY_WEBHOOK_TIMEOUT_S = env.float("NOTIFY_WEBHOOK_TIMEOUT_S", default=10.0)
#: Base URL of the console for links in messages (empty: no links).
NOTIFY_BASE_URL = env.str("NOTIFY_BASE_URL", default="")
#: Days before a risk acceptance expires that it is announced.
NOTIFY_RISK_EXPIRY_DAYS = env.int("NOTIFY_RISK_EXPIRY_DAYS", default=7)
#: Share of an APV's SLA window (first seen → SLA due) after which it is announced.
NOTIFY_SLA_WARN_PERCENT = env.int("NOTIFY_SLA_WARN_PERCENT", default=80)
#: Detection looks this far behind its last run for new APVs, verdicts and escalations
#: (rows committed late by a long transaction); the unique constraint drops repeats.
NOTIFY_DETECT_OVERLAP_MINUTES = env.int("NOTIFY_DETECT_OVERLAP_MINUTES", default=60)
#: Sends enqueued per channel per detection pass; the rest wait for the next pass.
NOTIFY_MAX_SENDS_PER_PASS = env.int("NOTIFY_MAX_SENDS_PER_PASS", default=100)
#: Celery rate limit of the send task, per worker ("" for none).
NOTIFY_TASK_RATE_LIMIT = env.str("NOTIFY_TASK_RATE_LIMIT", default="60/m") or None
#: Retries of a failed send, with exponential backoff from NOTIFY_RETRY_BACKOFF_S (jittered)
#: up to NOTIFY_RETRY_BACKOFF_MAX_S; then the delivery is ``failed``.
NOTIFY_MAX_RETRIES = env.int("NOTIFY_MAX_RETRIES", default=5)
NOTIFY_RETRY_BACKOFF_S = env.int("NOTIFY_RETRY_BACKOFF_S", default=30)
NOTIFY_RETRY_BACKOFF_MAX_S = env.int("NOTIFY_RETRY_BACKOFF_MAX_S", default=600)
#: A delivery still pending this long after its task was enqueued (the task was lost) is
#: enqueued again; longer than the whole retry schedule.
NOTIFY_REQUEUE_AFTER_S = env.int("NOTIFY_REQUEUE_AFTER_S", default=3600)
CELERY_BEAT_SCHEDULE["notifications-detect"] = {
    "task": "notifications.detect", "schedule": timedelta(minutes=1), "options": {"expires": 55},
}
