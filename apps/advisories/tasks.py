import structlog
from django.conf import settings

from apps.advisories.services import advisories_import
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
    for source in settings.ADVISORY_SOURCES:
        report = advisories_import(sources=[source], source_name=source)
        summary = report.as_dict()
        summary["failures"] = summary["failures"][:SYNC_FAILURES_SHOWN]
        summary["unparseable_ranges"] = len(report.unparseable_ranges)
        if report.unreadable_sources:
            log.warning("advisories.sync_source_unreadable", source=source,
                        reason=report.unreadable_sources[0].reason)
        results[source] = summary
    return results
