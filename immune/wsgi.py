"""WSGI entry point (HTTP only; WebSockets need the ASGI app in immune.asgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "immune.settings")
application = get_wsgi_application()
