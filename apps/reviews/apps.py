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

        # What the advisories app announces after an import commits (it never imports us).
        from apps.advisories.signals import advisories_changed, exploitation_evidence_changed

        advisories_changed.connect(_rescan_on_advisories_changed,
                                   dispatch_uid="reviews.rescan_on_advisories_changed")
        exploitation_evidence_changed.connect(
            _reprioritise_on_evidence, dispatch_uid="reviews.reprioritise_on_evidence")


def _rescan_on_advisories_changed(sender, *, packages, **kwargs) -> None:
    from apps.reviews.services import projects_rescan_for_packages

    projects_rescan_for_packages(packages=packages)


def _reprioritise_on_evidence(sender, *, advisory_ids, **kwargs) -> None:
    from apps.reviews.services import apvs_reprioritise

    apvs_reprioritise(advisory_ids=advisory_ids)
