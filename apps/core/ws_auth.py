"""Who is on the other end of ``/ws/reviews/``: an API token or a browser session.

- **API token** (scripts, dashboards): sent in the handshake, never in the URL, where
  proxies and access logs would keep it. Either as a subprotocol,
  ``Sec-WebSocket-Protocol: immune, immune.token.<token>`` (the only header a browser's
  ``WebSocket`` can set; the server answers ``immune`` and never echoes the token), or as
  ``Authorization: Token <token>`` where the client can set headers. A token connection
  needs no ``Origin``; if it sends one (a browser), it must be one of ours.
- **Session** (the console): the session cookie, only with an ``Origin`` of ours, so a
  page on another site cannot ride a reviewer's cookie (cross-site WebSocket hijacking).

A connection that is neither is closed by the consumer (4401) before it is accepted.
"""

from __future__ import annotations

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.security.websocket import AllowedHostsOriginValidator
from django.contrib.auth.models import AnonymousUser

#: The subprotocol the server speaks, and the prefix of the one that carries a token.
SUBPROTOCOL = "immune"
TOKEN_PREFIX = "immune.token."  # noqa: S105 (a prefix, not a secret)


def _header(scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin1")
    return ""


def _token_of(scope) -> str | None:
    for protocol in scope.get("subprotocols") or []:
        if protocol.startswith(TOKEN_PREFIX):
            return protocol[len(TOKEN_PREFIX):]
    scheme, _, key = _header(scope, b"authorization").partition(" ")
    if scheme.lower() == "token" and key.strip():
        return key.strip()
    return None


@database_sync_to_async
def _user_for(key: str):
    from rest_framework.authtoken.models import Token

    token = Token.objects.select_related("user").filter(key=key).first()
    if token is None or not token.user.is_active:
        return AnonymousUser()
    return token.user


class TokenOrSessionAuth:
    """ASGI middleware in front of the WebSocket routes (see the module's docstring)."""

    def __init__(self, inner) -> None:
        self.session = AllowedHostsOriginValidator(AuthMiddlewareStack(inner))
        self.token_checked_origin = AllowedHostsOriginValidator(inner)
        self.inner = inner

    async def __call__(self, scope, receive, send):
        key = _token_of(scope)
        if key is None:
            return await self.session(scope, receive, send)
        scope = dict(scope)
        scope["subprotocols"] = [p for p in scope.get("subprotocols") or []
                                 if not p.startswith(TOKEN_PREFIX)]
        scope["user"] = await _user_for(key)
        scope["auth_method"] = "token"
        if _header(scope, b"origin"):
            return await self.token_checked_origin(scope, receive, send)
        return await self.inner(scope, receive, send)
