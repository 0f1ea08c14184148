"""``/ws/reviews/``: live updates for the review console and other clients.

Protocol (spec, Interfaces → WebSocket; docs/api.md, "WebSocket"): a connection starts
subscribed to ``DEFAULT_CHANNELS`` (the console's: apvs, decisions, stats), listed in its
``connection_ack``; the client sends ``subscribe`` / ``unsubscribe`` with ``channels``
(apvs, decisions, wargames, stats) and ``ping``; the server sends ``connection_ack``,
``pong``, ``subscribed``/``unsubscribed`` (the subscriptions now), the events of subscribed
channels as ``{"type": <event>, "data": {...}}`` (the APV's code always under ``apv``) and
``error``. The detail page also sends ``presence`` with an ``apv`` code (and again as a
heartbeat); everyone viewing that APV receives ``presence`` with the viewers.
Authentication (API token or session, ``apps.core.ws_auth``) happens before; anonymous
connections are closed before they are accepted.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.core.cache import cache

from apps.core.realtime import CHANNELS, group_name
from apps.core.ws_auth import SUBPROTOCOL

#: Close code for an unauthenticated connection (4000-4999 are application codes).
CLOSE_UNAUTHENTICATED = 4401
#: A viewer who sent no presence heartbeat for this long is no longer shown.
PRESENCE_TTL_S = 90
#: What a connection receives before it subscribes to anything: what the console shows.
DEFAULT_CHANNELS = ("apvs", "decisions", "stats")
_APV_CODE = re.compile(r"^APV-\d{8}-\d{4,}$")


def _presence_key(code: str) -> str:
    return f"presence:{code}"


def _presence_group(code: str) -> str:
    return f"immune.presence.{code}"


class ReviewsConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.subscriptions: set[str] = set()
        offered = self.scope.get("subprotocols") or []
        await self.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
        for channel in DEFAULT_CHANNELS:
            await self.channel_layer.group_add(group_name(channel), self.channel_name)
            self.subscriptions.add(channel)
        await self.send_json(
            {"type": "connection_ack", "user": user.get_username(), "channels": sorted(CHANNELS),
             "subscriptions": sorted(self.subscriptions),
             "auth": self.scope.get("auth_method", "session")}
        )

    async def disconnect(self, code: int) -> None:
        for channel in getattr(self, "subscriptions", set()):
            await self.channel_layer.group_discard(group_name(channel), self.channel_name)
        if getattr(self, "viewing", None):
            await self._leave(self.viewing)

    async def receive_json(self, content: Any, **kwargs) -> None:
        if not isinstance(content, dict):
            await self._error("bad_message", "Messages are JSON objects with a 'type'.")
            return
        kind = content.get("type")
        if kind == "ping":
            await self.send_json({"type": "pong", "ts": content.get("ts")})
        elif kind in ("subscribe", "unsubscribe"):
            await self._change_subscriptions(kind, content.get("channels"))
        elif kind == "presence":
            await self._presence(content.get("apv"))
        else:
            await self._error("unknown_type", f"Unknown message type {kind!r}.")

    async def _change_subscriptions(self, kind: str, channels: Any) -> None:
        if not isinstance(channels, list) or not channels:
            await self._error("bad_channels", "'channels' must be a non-empty list.")
            return
        unknown = [c for c in channels if c not in CHANNELS]
        if unknown:
            await self._error("unknown_channel", f"Unknown channels: {unknown}.")
            return
        for channel in channels:
            if kind == "subscribe" and channel not in self.subscriptions:
                await self.channel_layer.group_add(group_name(channel), self.channel_name)
                self.subscriptions.add(channel)
            elif kind == "unsubscribe" and channel in self.subscriptions:
                await self.channel_layer.group_discard(group_name(channel), self.channel_name)
                self.subscriptions.discard(channel)
        await self.send_json({"type": f"{kind}d", "channels": sorted(self.subscriptions)})

    async def realtime_event(self, message: dict[str, Any]) -> None:
        """Handler for ``realtime.event`` messages sent by ``apps.core.realtime``."""
        await self.send_json({"type": message["event"], "data": message["data"]})

    # --- presence: who else has this APV open (the detail page sends a heartbeat) ---------
    async def _presence(self, code: Any) -> None:
        if not isinstance(code, str) or not _APV_CODE.match(code):
            await self._error("bad_apv", "'apv' must be an APV code.")
            return
        if getattr(self, "viewing", None) not in (None, code):
            await self._leave(self.viewing)
        if getattr(self, "viewing", None) != code:
            await self.channel_layer.group_add(_presence_group(code), self.channel_name)
            self.viewing = code
        viewers = await self._viewers(code, join=True)
        await self._broadcast_presence(code, viewers)

    async def _leave(self, code: str) -> None:
        await self.channel_layer.group_discard(_presence_group(code), self.channel_name)
        viewers = await self._viewers(code, join=False)
        self.viewing = None
        await self._broadcast_presence(code, viewers)

    async def _viewers(self, code: str, *, join: bool) -> list[str]:
        """Update this connection's entry in the shared presence map (the cache, so it
        works across web processes on Redis) and return who is viewing now."""
        now = time.time()
        raw = await cache.aget(_presence_key(code))
        entries = json.loads(raw) if raw else {}
        entries = {k: v for k, v in entries.items() if v["until"] > now}
        if join:
            entries[self.channel_name] = {"user": self.scope["user"].get_username(),
                                          "until": now + PRESENCE_TTL_S}
        else:
            entries.pop(self.channel_name, None)
        await cache.aset(_presence_key(code), json.dumps(entries), PRESENCE_TTL_S)
        return sorted({entry["user"] for entry in entries.values()})

    async def _broadcast_presence(self, code: str, viewers: list[str]) -> None:
        await self.channel_layer.group_send(_presence_group(code), {
            "type": "realtime.event", "event": "presence",
            "data": {"apv": code, "viewers": viewers}})

    async def _error(self, code: str, message: str) -> None:
        await self.send_json({"type": "error", "code": code, "message": message})

    @classmethod
    async def decode_json(cls, text_data: str) -> Any:
        try:
            return json.loads(text_data)
        except ValueError:
            return None
