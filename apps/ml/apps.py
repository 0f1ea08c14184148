from django.apps import AppConfig


class MlConfig(AppConfig):
    name = "apps.ml"
    label = "ml"
    verbose_name = "ML-first (patch validity model)"

    def ready(self) -> None:
        from apps.core.metrics import register_domain_collector
        from apps.ml import metrics

        register_domain_collector("ml", metrics.collect, metrics.DESCRIBE)

        # ML-first routes what reviews proposes and learns from what wargaming finishes;
        # neither imports it (docs/architecture.md, "Hooks").
        from apps.ml.services import model_is_active, patch_route_on_proposal, predictions_settle
        from apps.reviews.hooks import patch_proposed, routing_active
        from apps.wargaming.hooks import run_finished

        routing_active.subscribe(model_is_active)
        patch_proposed.subscribe(patch_route_on_proposal)
        run_finished.subscribe(predictions_settle)
