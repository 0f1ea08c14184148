import structlog
from django.conf import settings

from apps.advisories.evidence import evidence_fetch_and_import
from apps.advisories.nvd.fetch import nvd_sync
from apps.advisories.services import advisories_announce, advisories_import
from apps.core.instrumentation import instrumented_task

log = structlog.get_logger(__name__)

#: Failures the task result lists per source (all are counted, and logged by the import).
SYNC_FAILURES_SHOWN = 20


@instrumented_task(name="advisories.sync")
def advisories_sync() -> dict:
    """Re-import every configured feed (beat: hourly). Idempotent: unchanged records are
    skipped without a write.

    Goes through the same import as the command, so a hostile or broken record is one
    failure in the result, never an exception: the task fails only when the import itself
    cannot run (the database is gone, for instance).
    """
    results = {}
    changed: list[int] = []
    for source in settings.ADVISORY_SOURCES:
        report = advisories_import(sources=[source], source_name=source, announce=False)
        changed += report.changed_ids
        summary = report.as_dict()
        summary["failures"] = summary["failures"][:SYNC_FAILURES_SHOWN]
        summary["unparseable_ranges"] = len(report.unparseable_ranges)
        if report.unreadable_sources:
            log.warning("advisories.sync_source_unreadable", source=source,
                        reason=report.unreadable_sources[0].reason)
        results[source] = summary
    # Once for all sources, so a project is rescanned once however many feeds changed.
    advisories_announce(advisory_ids=changed)
    return results


def _evidence(feed: str, url: str) -> dict:
    if not url:
        return {"skipped": f"{feed.upper()}_URL is empty"}
    report = evidence_fetch_and_import(feed=feed, url=url)
    summary = report.as_dict()
    summary["failures"] = summary["failures"][:SYNC_FAILURES_SHOWN]
    if report.unreadable:
        log.warning("advisories.evidence_unreadable", feed=feed, url=url,
                    reason=report.unreadable)
    return summary


@instrumented_task(name="advisories.import_epss")
def advisories_import_epss() -> dict:
    """Beat (daily, when EPSS_URL is set): FIRST's EPSS scores. Idempotent."""
    return _evidence("epss", settings.EPSS_URL)


@instrumented_task(name="advisories.import_kev")
def advisories_import_kev() -> dict:
    """Beat (daily, when KEV_URL is set): CISA's KEV catalog. Idempotent."""
    return _evidence("kev", settings.KEV_URL)


@instrumented_task(name="advisories.sync_nvd")
def advisories_sync_nvd() -> dict:
    """Beat (every NVD_SYNC_INTERVAL_S, when NVD_SYNC is "feed" or "api"): NVD's CVSS, CWE
    and KEV data for the CVEs changed since the last run (docs/nvd.md). Idempotent."""
    if not settings.NVD_SYNC:
        return {"skipped": "NVD_SYNC is empty"}
    report = nvd_sync()
    summary = report.as_dict()
    summary["failures"] = summary["failures"][:SYNC_FAILURES_SHOWN]
    summary["sources"] = summary["sources"][-SYNC_FAILURES_SHOWN:]
    if report.unreadable:
        log.warning("advisories.nvd_unreadable", mode=settings.NVD_SYNC,
                    reason=report.unreadable)
    return summary
