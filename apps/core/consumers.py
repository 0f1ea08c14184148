"""``/ws/reviews/``: live updates for the review console and other clients.

Protocol (spec, Interfaces → WebSocket): the client sends ``subscribe`` /
``unsubscribe`` with ``channels`` (apvs, decisions, wargames, stats) and ``ping``;
the server sends ``connection_ack``, ``pong``, the events of subscribed channels
and ``error``. Anonymous connections are closed before they are accepted.
"""

from __future__ import annotations

from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from apps.core.realtime import CHANNELS, group_name

#: Close code for an unauthenticated connection (4000-4999 are application codes).
CLOSE_UNAUTHENTICATED = 4401


class ReviewsConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.subscriptions: set[str] = set()
        await self.accept()
        await self.send_json(
            {"type": "connection_ack", "user": user.get_username(), "channels": sorted(CHANNELS)}
        )

    async def disconnect(self, code: int) -> None:
        for channel in getattr(self, "subscriptions", set()):
            await self.channel_layer.group_discard(group_name(channel), self.channel_name)

    async def receive_json(self, content: Any, **kwargs) -> None:
        if not isinstance(content, dict):
            await self._error("bad_message", "Messages are JSON objects with a 'type'.")
            return
        kind = content.get("type")
        if kind == "ping":
            await self.send_json({"type": "pong", "ts": content.get("ts")})
        elif kind in ("subscribe", "unsubscribe"):
            await self._change_subscriptions(kind, content.get("channels"))
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

    async def _error(self, code: str, message: str) -> None:
        await self.send_json({"type": "error", "code": code, "message": message})

    @classmethod
    async def decode_json(cls, text_data: str) -> Any:
        import json

        try:
            return json.loads(text_data)
        except ValueError:
            return None
