"""WSGI entry point (HTTP only; WebSockets need the ASGI app in immune.asgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "immune.settings")
application = get_wsgi_application()

# Everything loaded at start-up (modules, settings, URL patterns) lives as long as the
# process: keep it out of every later collection's traversal.
import gc  # noqa: E402

gc.freeze()
