from django.conf import settings

from apps.advisories.services import advisories_import
from apps.core.instrumentation import instrumented_task


@instrumented_task(name="advisories.sync")
def advisories_sync() -> dict:
    """Re-import every configured feed (beat: hourly). Idempotent: unchanged records are
    skipped without a write."""
    results = {}
    for source in settings.ADVISORY_SOURCES:
        report = advisories_import(sources=[source], source_name=source)
        results[source] = {k: v for k, v in report.as_dict().items() if k != "failures"}
    return results
