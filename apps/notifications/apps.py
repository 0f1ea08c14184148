from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "apps.notifications"
    label = "notifications"
    verbose_name = "Notifications"

    def ready(self) -> None:
        from django.core import checks

        from apps.core.metrics import register_domain_collector
        from apps.notifications import metrics
        from apps.notifications.channels import check_webhook_urls

        register_domain_collector("notifications", metrics.collect, metrics.DESCRIBE)
        checks.register(check_webhook_urls)
