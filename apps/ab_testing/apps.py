from django.apps import AppConfig


class AbTestingConfig(AppConfig):
    name = "apps.ab_testing"
    label = "ab_testing"
    verbose_name = "A/B testing (model against wargaming)"
