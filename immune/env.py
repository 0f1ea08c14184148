"""The one module that reads the process environment.

Everything else (settings, Celery, management commands) asks this module, so the
full list of knobs an operator can turn is in one place and documented in
``docs/configuration.md``.
"""

from __future__ import annotations

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

# A `.env` file next to manage.py is read for local development only; real
# environment variables always win over it.
_dotenv = BASE_DIR / ".env"
if _dotenv.is_file():
    environ.Env.read_env(str(_dotenv), overwrite=False)

#: Placeholder used when SECRET_KEY is not set; production refuses to start with it.
DEFAULT_SECRET_KEY = "insecure-development-key-change-me"  # noqa: S105

DJANGO_ENV: str = env.str("DJANGO_ENV", default="development")
IS_PRODUCTION: bool = DJANGO_ENV == "production"
DATA_DIR = Path(env.str("IMMUNE_DATA_DIR", default=str(BASE_DIR / "data")))
DATABASE_URL: str | None = env.str("DATABASE_URL", default=None) or None
REDIS_URL: str | None = env.str("REDIS_URL", default=None) or None
