from django.apps import AppConfig


class ReviewsConfig(AppConfig):
    name = "apps.reviews"
    label = "reviews"
    verbose_name = "Reviews"

    def ready(self) -> None:
        # The forge breaker exists (and shows in /health/components) before any patch.
        from apps.core.metrics import register_domain_collector
        from apps.reviews import metrics
        from apps.reviews.forge import adapter  # noqa: F401

        register_domain_collector("reviews", metrics.collect, metrics.DESCRIBE)
