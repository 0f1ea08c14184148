from django.apps import AppConfig


class AdvisoriesConfig(AppConfig):
    name = "apps.advisories"
    label = "advisories"
    verbose_name = "Advisories (Oráculo)"
