"""ASGI entry point: HTTP through Django, ``/ws/...`` through Channels.

WebSocket connections authenticate with an API token (a subprotocol or an Authorization
header) or with the session cookie and an Origin of ours (``apps.core.ws_auth``), so
consumers see ``scope["user"]`` and can close anonymous ones.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "immune.settings")
# Django must be set up before anything imports models (the consumers do).
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from apps.core.ws_auth import TokenOrSessionAuth  # noqa: E402
from immune.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": TokenOrSessionAuth(URLRouter(websocket_urlpatterns)),
    }
)

# Everything loaded at start-up (modules, settings, URL patterns) lives as long as the
# process: keep it out of every later collection's traversal.
import gc  # noqa: E402

gc.freeze()
