from django.apps import AppConfig


class WargamingConfig(AppConfig):
    name = "apps.wargaming"
    label = "wargaming"
    verbose_name = "Wargaming (Crisol)"

    def ready(self) -> None:
        from celery.signals import worker_ready

        from apps.core.health import register_check
        from apps.wargaming import health

        register_check("sandbox", health.health_check)
        worker_ready.connect(health.publish_status_on_start, weak=False)
