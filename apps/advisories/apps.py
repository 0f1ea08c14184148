from django.apps import AppConfig


class AdvisoriesConfig(AppConfig):
    name = "apps.advisories"
    label = "advisories"
    verbose_name = "Advisories (Oráculo)"

    def ready(self) -> None:
        # The OSV download breaker exists (and shows in /health/components) before a fetch.
        from apps.advisories.osv import sources  # noqa: F401
