"""ASGI entry point: HTTP through Django, ``/ws/...`` through Channels.

WebSocket connections pass the origin check and Channels' session/auth
middleware, so consumers see ``scope["user"]`` and can close anonymous ones.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "immune.settings")
# Django must be set up before anything imports models (the consumers do).
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from immune.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)

# Everything loaded at start-up (modules, settings, URL patterns) lives as long as the
# process: keep it out of every later collection's traversal.
import gc  # noqa: E402

gc.freeze()
