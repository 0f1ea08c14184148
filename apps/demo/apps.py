from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The demo (``manage.py demo``): builds a project and walks it through every app, so it
    sits above all of them; nothing imports it."""

    name = "apps.demo"
    label = "demo"
