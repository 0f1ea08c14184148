"""Sending one message on one channel: email through Django's email backend, webhooks as
a JSON POST with a Slack-compatible ``text``.

Webhook URLs are secrets (Slack's and most chat tools' carry the token in the path): they
are read from ``NOTIFY_WEBHOOK_URLS`` when sending, stored and logged only as
``<host>#<fingerprint>``, and no error message here contains more than the host.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import smtplib
import ssl
from urllib.parse import urlsplit

from django.conf import settings
from django.core import checks
from django.core.mail import EmailMessage, get_connection

from apps.notifications.errors import DeliveryError, TargetGone

USER_AGENT = "immune-notifications/1"


# --- Webhooks ------------------------------------------------------------------------------

def webhook_target(url: str) -> str:
    """What the audit row keeps of a webhook URL: its host and a fingerprint."""
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return f"{urlsplit(url).hostname or '?'}#{digest}"


def webhook_host(target: str) -> str:
    return target.split("#", 1)[0]


def webhook_targets() -> dict[str, str]:
    """Configured webhook URLs by their target (http(s) only; the rest is refused at
    startup by ``check_webhook_urls``)."""
    return {webhook_target(url): url for url in settings.NOTIFY_WEBHOOK_URLS
            if urlsplit(url).scheme in ("http", "https") and urlsplit(url).hostname}


def check_webhook_urls(app_configs=None, **_kwargs) -> list[checks.CheckMessage]:
    """``manage.py check`` (and every start): each NOTIFY_WEBHOOK_URLS entry is http(s).
    The entry is named by its position, never shown."""
    errors = []
    for index, url in enumerate(settings.NOTIFY_WEBHOOK_URLS, start=1):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            errors.append(checks.Error(
                f"NOTIFY_WEBHOOK_URLS entry {index} is not an http:// or https:// URL",
                hint="Webhooks are POSTed over HTTP(S) only.", id="notifications.E001"))
    return errors


def webhook_post(*, target: str, body: dict, delivery_id: int) -> int:
    """POST ``body`` as JSON to the webhook behind ``target``; the HTTP status on success.

    http.client follows no redirect: a 3xx is a failure, so a webhook can never be turned
    into a request to another scheme or host (and urllib3's debug log, which prints the
    path, is never involved)."""
    url = webhook_targets().get(target)
    if url is None:
        raise TargetGone(f"webhook {webhook_host(target)} is no longer in NOTIFY_WEBHOOK_URLS")
    parts = urlsplit(url)
    host = parts.hostname
    timeout = settings.NOTIFY_WEBHOOK_TIMEOUT_S
    if parts.scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            host, parts.port, timeout=timeout, context=ssl.create_default_context())
    else:
        conn = http.client.HTTPConnection(host, parts.port, timeout=timeout)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    data = json.dumps(body, default=str).encode()
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
               # Receivers may drop a repeat: a retry after a lost response resends.
               "X-Immune-Delivery": str(delivery_id)}
    if parts.username or parts.password:
        userinfo = f"{parts.username or ''}:{parts.password or ''}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(userinfo).decode()
    try:
        conn.request("POST", path, body=data, headers=headers)
        response = conn.getresponse()
        response.read(64 * 1024)
        status = response.status
    except (OSError, http.client.HTTPException) as exc:
        # str(exc) of a socket error names no URL; keep only its class and errno text.
        raise DeliveryError(f"webhook {host}: {type(exc).__name__}: "
                            f"{_short(exc)}") from None
    finally:
        conn.close()
    if 300 <= status < 400:
        raise DeliveryError(f"webhook {host}: HTTP {status} (redirects are not followed)")
    if status >= 400:
        raise DeliveryError(f"webhook {host}: HTTP {status}")
    return status


def _short(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text[:200]


# --- Email ---------------------------------------------------------------------------------

def email_send(*, to: str, subject: str, body: str, delivery_id: int) -> None:
    connection = get_connection(fail_silently=False)
    message = EmailMessage(subject=subject, body=body, from_email=settings.NOTIFY_EMAIL_FROM,
                           to=[to], connection=connection,
                           headers={"X-Immune-Delivery": str(delivery_id)})
    try:
        message.send(fail_silently=False)
    except (smtplib.SMTPException, OSError) as exc:
        # SMTP errors carry the server's reply (and maybe the recipient), never the
        # password; the host is EMAIL_HOST's, whatever EMAIL_URL held.
        raise DeliveryError(f"email via {settings.EMAIL_HOST}: {type(exc).__name__}: "
                            f"{_short(exc)}") from None
