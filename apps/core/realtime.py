"""The one place that pushes events to WebSocket groups.

Only services call it, and only through ``send_event_on_commit``: an event about a
row must never reach a browser before the row is committed (or at all, if the
transaction rolls back). Consumers subscribe clients to these groups; see
``apps/core/consumers.py`` and the WebSocket section of the spec.
"""

from __future__ import annotations

import json
from typing import Any

import structlog
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction

log = structlog.get_logger(__name__)

#: Channels a client may subscribe to, and the event types that travel on each.
CHANNELS: dict[str, tuple[str, ...]] = {
    "apvs": ("apv.created", "apv.updated"),
    "decisions": ("decision.made", "decision.applied"),
    "wargames": ("wargame.progress",),
    "stats": ("stats.update",),
}


def group_name(channel: str) -> str:
    if channel not in CHANNELS:
        raise ValueError(f"unknown realtime channel {channel!r}; known: {sorted(CHANNELS)}")
    return f"immune.{channel}"


def _message(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    # Round-trip through JSON so dates/decimals/UUIDs are plain values on every layer
    # (channels-redis serialises with msgpack, which knows none of them).
    payload = json.loads(json.dumps(data, cls=DjangoJSONEncoder))
    return {"type": "realtime.event", "event": event_type, "data": payload}


def send_event(channel: str, event_type: str, data: dict[str, Any]) -> None:
    """Push now. Use ``send_event_on_commit`` from services."""
    if event_type not in CHANNELS.get(channel, ()):
        raise ValueError(f"event {event_type!r} does not travel on channel {channel!r}")
    layer = get_channel_layer()
    if layer is None:
        return
    send = async_to_sync(layer.group_send)
    try:
        if type(layer).__module__.startswith("channels_redis"):
            # Behind the Redis breaker: with Redis down a decision does not wait out a
            # connection timeout per event; the event is dropped (clients resync on reconnect).
            from apps.core.breakers import CircuitBreakerError
            from apps.core.cache import REDIS_BREAKER

            try:
                REDIS_BREAKER.guard(send, group_name(channel), _message(event_type, data))
            except CircuitBreakerError:
                log.warning("realtime.send_skipped", channel=channel, event_type=event_type,
                            reason="redis circuit open")
        else:
            send(group_name(channel), _message(event_type, data))
    except Exception:
        # A live update is best effort: the database already holds the truth.
        log.exception("realtime.send_failed", channel=channel, event_type=event_type)


def send_event_on_commit(channel: str, event_type: str, data: dict[str, Any]) -> None:
    """Push after the current transaction commits (at once when there is none)."""
    group_name(channel)  # fail early, inside the caller's transaction, on a bad channel
    transaction.on_commit(lambda: send_event(channel, event_type, data))
