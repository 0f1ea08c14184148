from django.apps import AppConfig


class AdvisoriesConfig(AppConfig):
    name = "apps.advisories"
    label = "advisories"
    verbose_name = "Advisories (Oráculo)"

    def ready(self) -> None:
        # The OSV, EPSS/KEV and NVD download breakers exist (and show in
        # /health/components) before a fetch.
        from apps.advisories import evidence  # noqa: F401
        from apps.advisories.nvd import fetch  # noqa: F401
        from apps.advisories.osv import sources  # noqa: F401
