"""Log lines carry no frame locals and no secrets, in either format."""

from __future__ import annotations

import logging
import sys

import pytest
import structlog

from immune.logconfig import build_logging_config

TOKEN = "9f2c1e0b7a6d5c4b3a29180716253443"
DB_PASSWORD = "s3cret-db-pass-77"
SECRET_KEY = "deployment-secret-key-0123456789-abcdefghij"


def _formatter(fmt: str) -> structlog.stdlib.ProcessorFormatter:
    config = build_logging_config(fmt=fmt, level="INFO", secrets=[SECRET_KEY])
    options = dict(config["formatters"]["structured"])
    options.pop("()")
    return structlog.stdlib.ProcessorFormatter(**options)


def _failing_request():
    authorization = f"Token {TOKEN}"  # noqa: F841 (a frame local the log must not show)
    database_url = f"postgres://immune:{DB_PASSWORD}@db:5432/immune"
    raise RuntimeError(f"could not connect to {database_url} (key {SECRET_KEY})")


@pytest.fixture(autouse=True)
def _restore_structlog():
    yield
    from django.conf import settings

    build_logging_config(fmt="console", level=settings.LOG_LEVEL)


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_exceptions_log_without_locals_or_secrets(fmt):
    try:
        _failing_request()
    except RuntimeError:
        exc_info = sys.exc_info()
    record = logging.LogRecord("apps.test", logging.ERROR, __file__, 1,
                               "request failed: Authorization: Token %s password=%s",
                               (TOKEN, "hunter2-hunter2"), exc_info)
    line = _formatter(fmt).format(record)
    assert "_failing_request" in line and "RuntimeError" in line  # the traceback is there
    for secret in (TOKEN, DB_PASSWORD, SECRET_KEY, "hunter2-hunter2"):
        assert secret not in line, (secret, line[-2000:])
    assert "[REDACTED]" in line
    assert "authorization =" not in line.lower()  # no locals listing


def test_secret_named_fields_are_redacted_whatever_they_hold(capsys):
    formatter = _formatter("json")
    logger = structlog.get_logger("apps.test")
    event = {"event": "login", "password": "plain-password-123", "cookie": "sessionid=abc",
             "nested": {"api_key": "k-123456789"}, "user": "alice"}
    rendered = formatter.format(logging.makeLogRecord({
        "msg": event, "levelno": logging.INFO, "levelname": "INFO", "name": "apps.test",
        "_logger": logger, "_name": "info"}))
    assert "plain-password-123" not in rendered and "k-123456789" not in rendered
    assert "sessionid=abc" not in rendered and "alice" in rendered
