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
        from apps.advisories.signals import (
            advisories_changed,
            advisories_withdrawn,
            exploitation_evidence_changed,
        )

        advisories_changed.connect(_rescan_on_advisories_changed,
                                   dispatch_uid="reviews.rescan_on_advisories_changed")
        exploitation_evidence_changed.connect(
            _reprioritise_on_evidence, dispatch_uid="reviews.reprioritise_on_evidence")
        advisories_withdrawn.connect(_resolve_on_withdrawn,
                                     dispatch_uid="reviews.resolve_on_withdrawn")
        # What inventory announces when a scan stored a project's dependencies: the APVs
        # follow the exposures it found.
        from apps.inventory.hooks import dependencies_scanned
        from apps.reviews.services.apvs import apvs_sync_for_project

        dependencies_scanned.subscribe(apvs_sync_for_project)


def _rescan_on_advisories_changed(sender, *, packages, **kwargs) -> None:
    from apps.reviews.services import projects_rescan_for_packages

    projects_rescan_for_packages(packages=packages)


def _reprioritise_on_evidence(sender, *, advisory_ids, **kwargs) -> None:
    from apps.reviews.services import apvs_reprioritise

    apvs_reprioritise(advisory_ids=advisory_ids)


def _resolve_on_withdrawn(sender, *, osv_ids, **kwargs) -> None:
    from apps.reviews.services import apvs_resolve_for_withdrawn_advisories

    apvs_resolve_for_withdrawn_advisories(osv_ids=osv_ids)
