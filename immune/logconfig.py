"""Logging: structlog in front, the standard library behind.

Django's, Celery's and our own loggers all end in the same handler, whose
formatter renders JSON lines in production and readable console lines in
development. Context bound with ``structlog.contextvars`` (the request id, the
task name and id) is merged into every line, including lines from libraries
that log through the standard library.
"""

from __future__ import annotations

import re
from typing import Any

import structlog
from structlog.tracebacks import ExceptionDictTransformer

REDACTED = "[REDACTED]"
#: Keys whose values never reach a log line, whatever they hold.
SECRET_KEYS = re.compile(r"pass(word|wd)?|secret|token|authorization|cookie|api[_-]?key|"
                         r"credential|dsn|sessionid|csrf", re.IGNORECASE)
#: Secrets inside text: auth headers, passwords in URLs, key=value pairs.
SECRET_PATTERNS = [
    (re.compile(r"\b(Token|Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{6,}"), rf"\1 {REDACTED}"),
    (re.compile(r"(://[^:/@\s]+):[^@\s/]+@"), rf"\1:{REDACTED}@"),
    (re.compile(r"(?i)\b((?:pass(?:word|wd)?|secret(?:_key)?|token|api[_-]?key|sessionid|"
                r"csrftoken|authorization)[\"']?\s*[:=]\s*[\"']?)[^\s\"',&;}]+"),
     rf"\1{REDACTED}"),
]


class Redactor:
    """The last processor before rendering: secrets out of every value, however nested
    (tracebacks included). ``literals`` are exact secrets of this deployment (SECRET_KEY)."""

    def __init__(self, literals: list[str] | None = None):
        self.literals = [s for s in (literals or []) if s and len(s) >= 8]

    def __call__(self, _logger, _name, event: dict) -> dict:
        return {key: (REDACTED if SECRET_KEYS.search(str(key)) and key != "event"
                      else self._clean(value)) for key, value in event.items()}

    def _clean(self, value):
        if isinstance(value, str):
            for literal in self.literals:
                value = value.replace(literal, REDACTED)
            for pattern, replacement in SECRET_PATTERNS:
                value = pattern.sub(replacement, value)
            return value
        if isinstance(value, dict):
            return {k: (REDACTED if SECRET_KEYS.search(str(k)) else self._clean(v))
                    for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._clean(v) for v in value]
        return value

SHARED_PROCESSORS: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.stdlib.ExtraAdder(),
]


def build_logging_config(*, fmt: str, level: str,
                         secrets: list[str] | None = None) -> dict[str, Any]:
    """Configure structlog and return the matching ``logging.config`` dict. Tracebacks
    carry no frame locals (a request's token is one of them), and every line is redacted
    (``Redactor``; ``secrets`` are this deployment's literal secrets)."""
    redact = Redactor(secrets)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.filter_by_level,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    if fmt == "json":
        renderer: list[Any] = [
            structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),
            redact,
            structlog.processors.JSONRenderer(),
        ]
    else:
        renderer = [
            structlog.processors.format_exc_info,  # a plain traceback, no locals
            redact,
            structlog.dev.ConsoleRenderer(colors=False),
        ]
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structured": {
                "()": structlog.stdlib.ProcessorFormatter,
                "processors": [
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    *renderer,
                ],
                "foreign_pre_chain": SHARED_PROCESSORS,
            }
        },
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": "structured"}
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django": {"level": level, "propagate": True},
            # Request errors are logged by our middleware with the request id bound.
            "django.request": {"level": "ERROR", "propagate": True},
            "django.server": {"level": "WARNING", "propagate": True},
            "celery": {"level": level, "propagate": True},
            "daphne": {"level": "WARNING", "propagate": True},
            # runserver's access log repeats our request.finished line.
            "django.channels.server": {"level": "WARNING", "propagate": True},
            "apps": {"level": level, "propagate": True},
        },
    }
