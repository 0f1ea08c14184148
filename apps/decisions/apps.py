from django.apps import AppConfig


class DecisionsConfig(AppConfig):
    name = "apps.decisions"
    label = "decisions"
    verbose_name = "Decisions"

    def ready(self) -> None:
        from apps.core.metrics import register_domain_collector
        from apps.decisions import metrics

        register_domain_collector("decisions", metrics.collect, metrics.DESCRIBE)

        # A/B testing shows the reviewer's decision beside each pair; it cannot import us.
        from apps.ab_testing.hooks import reviewer_decisions
        from apps.decisions.selectors import with_reviewer_decision

        reviewer_decisions.subscribe(with_reviewer_decision)
