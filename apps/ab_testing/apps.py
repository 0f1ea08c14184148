from django.apps import AppConfig


class AbTestingConfig(AppConfig):
    name = "apps.ab_testing"
    label = "ab_testing"
    verbose_name = "A/B testing (model against wargaming)"

    def ready(self) -> None:
        # A/B testing samples what ML-first routes to review and pairs it with the wargame's
        # verdict when the run finishes (after ML-first settled its predictions: ml comes
        # first in INSTALLED_APPS, so it subscribed first).
        from apps.ab_testing.services import ab_result_record, ab_shadow_maybe
        from apps.ml.hooks import routed_to_review
        from apps.wargaming.hooks import run_finished

        routed_to_review.subscribe(ab_shadow_maybe)
        run_finished.subscribe(ab_result_record)
