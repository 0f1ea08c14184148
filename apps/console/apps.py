from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    """The review console: the admin's APV queue and detail, patches, the dashboard and
    their template tags. It sits on top of every domain app (it shows what they all hold),
    so nothing below imports it."""

    name = "apps.console"
    label = "console"
