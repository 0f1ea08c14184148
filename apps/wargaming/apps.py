from django.apps import AppConfig


class WargamingConfig(AppConfig):
    name = "apps.wargaming"
    label = "wargaming"
    verbose_name = "Wargaming (Crisol)"
