"""realtime.py pushes after commit; /ws/reviews/ delivers to subscribers only."""

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.db import transaction

from apps.core import realtime
from immune.asgi import application


def receive_now(channel_name, timeout=1.0):
    import asyncio

    layer = get_channel_layer()

    async def _receive():
        try:
            return await asyncio.wait_for(layer.receive(channel_name), timeout)
        except TimeoutError:
            return None

    return async_to_sync(_receive)()


def subscribed_channel(group="apvs"):
    layer = get_channel_layer()
    name = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(realtime.group_name(group), name)
    return name


@pytest.mark.django_db
def test_event_is_sent_only_after_commit(django_capture_on_commit_callbacks):
    channel = subscribed_channel()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        realtime.send_event_on_commit("apvs", "apv.created", {"code": "APV-20261122-0001"})
    assert len(callbacks) == 1  # queued for the commit, nothing sent yet
    callbacks[0]()
    message = receive_now(channel)
    assert message["event"] == "apv.created"
    assert message["data"] == {"code": "APV-20261122-0001"}


@pytest.mark.django_db(transaction=True)
def test_rolled_back_transaction_sends_nothing():
    channel = subscribed_channel()
    with pytest.raises(RuntimeError), transaction.atomic():
        realtime.send_event_on_commit("apvs", "apv.updated", {"code": "x"})
        raise RuntimeError("rollback")
    assert receive_now(channel, timeout=0.3) is None


def test_unknown_channel_or_event_is_refused():
    with pytest.raises(ValueError, match="unknown realtime channel"):
        realtime.send_event_on_commit("secrets", "apv.created", {})
    with pytest.raises(ValueError, match="does not travel"):
        realtime.send_event("apvs", "decision.made", {})


def test_dates_are_serialised_for_every_layer():
    import datetime

    message = realtime._message("stats.update", {"at": datetime.date(2026, 11, 22)})
    assert message["data"] == {"at": "2026-11-22"}


def session_cookie(client, user):
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


async def _open(cookie=None):
    headers = [(b"origin", b"http://127.0.0.1")]
    if cookie:
        headers.append((b"cookie", cookie))
    communicator = WebsocketCommunicator(application, "/ws/reviews/", headers=headers)
    connected, code = await communicator.connect()
    return communicator, connected, code


@pytest.mark.django_db(transaction=True)
def test_anonymous_websocket_is_closed():
    async def scenario():
        communicator, connected, code = await _open()
        await communicator.disconnect()
        return connected, code

    assert async_to_sync(scenario)() == (False, 4401)


@pytest.mark.django_db(transaction=True)
def test_foreign_origin_is_refused(client, reviewer):
    cookie = session_cookie(client, reviewer)

    async def scenario():
        communicator = WebsocketCommunicator(
            application, "/ws/reviews/",
            headers=[(b"origin", b"https://evil.example"), (b"cookie", cookie)],
        )
        connected, _ = await communicator.connect()
        await communicator.disconnect()
        return connected

    assert async_to_sync(scenario)() is False


@pytest.mark.django_db(transaction=True)
def test_subscriber_receives_events_of_its_channels_only(client, reviewer):
    cookie = session_cookie(client, reviewer)

    async def scenario():
        communicator, connected, _ = await _open(cookie)
        assert connected
        ack = await communicator.receive_json_from()
        await communicator.send_json_to({"type": "ping", "ts": 7})
        pong = await communicator.receive_json_from()
        # The default subscription (the console's) less apvs and stats, then decisions again
        await communicator.send_json_to({"type": "unsubscribe", "channels": ["apvs", "stats"]})
        trimmed = await communicator.receive_json_from()
        await communicator.send_json_to({"type": "subscribe", "channels": ["decisions"]})
        subscribed = await communicator.receive_json_from()
        await database_sync_to_async(realtime.send_event)("apvs", "apv.created", {"apv": "A"})
        await database_sync_to_async(realtime.send_event)(
            "decisions", "decision.made", {"apv": "A", "decision": "approve"}
        )
        event = await communicator.receive_json_from(timeout=2)
        await communicator.send_json_to({"type": "subscribe", "channels": ["nope"]})
        error = await communicator.receive_json_from()
        await communicator.send_to(text_data="not json")
        bad = await communicator.receive_json_from()
        await communicator.send_json_to({"type": "unsubscribe", "channels": ["decisions"]})
        unsubscribed = await communicator.receive_json_from()
        await database_sync_to_async(realtime.send_event)("decisions", "decision.made", {})
        nothing = await communicator.receive_nothing(timeout=0.3)
        await communicator.disconnect()
        return ack, pong, trimmed, subscribed, event, error, bad, unsubscribed, nothing

    (ack, pong, trimmed, subscribed, event, error, bad, unsubscribed,
     nothing) = async_to_sync(scenario)()
    assert ack["type"] == "connection_ack" and ack["user"] == "rita"
    assert ack["subscriptions"] == ["apvs", "decisions", "stats"] and ack["auth"] == "session"
    assert trimmed == {"type": "unsubscribed", "channels": ["decisions"]}
    assert pong == {"type": "pong", "ts": 7}
    assert subscribed == {"type": "subscribed", "channels": ["decisions"]}
    # the apv.created event was not for this subscriber; the first one it gets is the decision
    assert event == {"type": "decision.made", "data": {"apv": "A", "decision": "approve"}}
    assert error["type"] == "error" and error["code"] == "unknown_channel"
    assert bad["type"] == "error" and bad["code"] == "bad_message"
    assert unsubscribed == {"type": "unsubscribed", "channels": []}
    assert nothing is True


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_redis_channel_layer_delivers_across_processes(settings):
    """An event sent by another process through Redis reaches this process's group."""
    from tests.helpers import run_django

    assert settings.CHANNEL_LAYERS["default"]["BACKEND"] == "channels_redis.core.RedisChannelLayer"
    channel = subscribed_channel("stats")
    result = run_django(
        "from apps.core import realtime\n"
        "realtime.send_event('stats', 'stats.update', {'pending': 3})\n"
    )
    assert result.returncode == 0, result.stderr
    message = receive_now(channel, timeout=3)
    assert message["event"] == "stats.update" and message["data"] == {"pending": 3}


@pytest.mark.django_db(transaction=True)
def test_an_api_token_joins_as_a_subprotocol_and_a_wrong_one_is_closed(reviewer):
    """Scripts authenticate with their API token in the handshake (docs/api.md,
    "WebSocket"): no Origin needed; the server speaks ``immune`` and never echoes the token."""
    from rest_framework.authtoken.models import Token

    key = Token.objects.create(user=reviewer).key

    async def scenario(protocols):
        communicator = WebsocketCommunicator(application, "/ws/reviews/",
                                             subprotocols=protocols)
        connected, detail = await communicator.connect()
        ack = await communicator.receive_json_from() if connected else None
        await communicator.disconnect()
        return connected, detail, ack

    connected, subprotocol, ack = async_to_sync(scenario)(["immune", f"immune.token.{key}"])
    assert connected and subprotocol == "immune"
    assert (ack["user"], ack["auth"]) == ("rita", "token")
    assert ack["subscriptions"] == ["apvs", "decisions", "stats"]
    assert async_to_sync(scenario)(["immune", "immune.token.wrong"])[:2] == (False, 4401)
    # Without a token and without an Origin (no session can be trusted): refused.
    assert async_to_sync(scenario)(["immune"])[0] is False
