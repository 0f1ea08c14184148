from django.apps import AppConfig


class WargamingConfig(AppConfig):
    name = "apps.wargaming"
    label = "wargaming"
    verbose_name = "Wargaming (Crisol)"

    def ready(self) -> None:
        from celery.signals import worker_ready

        from apps.core.health import register_check
        from apps.core.metrics import register_domain_collector
        from apps.wargaming import health, metrics

        register_check("sandbox", health.health_check)
        register_domain_collector("wargaming", metrics.collect, metrics.DESCRIBE)
        worker_ready.connect(health.publish_status_on_start, weak=False)
