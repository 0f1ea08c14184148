"""The Celery application: worker and beat processes start from here.

    celery -A immune worker -l info
    celery -A immune beat -l info
"""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import setup_logging

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "immune.settings")

app = Celery("immune")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@setup_logging.connect
def _use_django_logging(**_kwargs) -> None:
    """Keep Celery from installing its own handlers: Django's LOGGING (structlog) is used."""
    import logging.config

    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
