"""Writes of the reviews app: APVs (``apvs``) and patches (``patches``)."""

from apps.reviews.services.apvs import (
    Exposure,
    SyncResult,
    apv_codes_allocate,
    apv_payload,
    apvs_reprioritise,
    apvs_resolve_for_withdrawn_advisories,
    apvs_sync_for_project,
    projects_rescan_for_packages,
    stats_push_on_commit,
)

__all__ = [
    "Exposure",
    "SyncResult",
    "apv_codes_allocate",
    "apv_payload",
    "apvs_reprioritise",
    "apvs_resolve_for_withdrawn_advisories",
    "apvs_sync_for_project",
    "projects_rescan_for_packages",
    "stats_push_on_commit",
]
