from django.apps import AppConfig


class MlConfig(AppConfig):
    name = "apps.ml"
    label = "ml"
    verbose_name = "ML-first (patch validity model)"

    def ready(self) -> None:
        from apps.core.metrics import register_domain_collector
        from apps.ml import metrics

        register_domain_collector("ml", metrics.collect, metrics.DESCRIBE)
