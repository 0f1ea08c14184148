from django.apps import AppConfig


class DecisionsConfig(AppConfig):
    name = "apps.decisions"
    label = "decisions"
    verbose_name = "Decisions"

    def ready(self) -> None:
        from apps.core.metrics import register_domain_collector
        from apps.decisions import metrics

        register_domain_collector("decisions", metrics.collect, metrics.DESCRIBE)
