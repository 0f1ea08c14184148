"""The optional NVD beat job (docs/nvd.md).

``NVD_SYNC = "feed"``: download ``NVD_FEED_URL`` (NVD's ``nvdcve-2.0-modified.json.gz``: the
CVEs changed in the last eight days, refreshed by NVD every two hours) and import it.
``NVD_SYNC = "api"``: walk the CVE API 2.0 (``NVD_API_URL``) by ``lastModified`` windows of at
most 120 days (NVD's limit) from where the last sync ended, 2,000 CVEs a page, each page
imported as it arrives; the cursor (``NvdSyncState``) moves only past a window imported whole,
so a failed page is fetched again next time (the import is idempotent).

Every request passes the ``nvd`` circuit breaker (no answer, a 5xx, a 403 or a 429: NVD
answers 403 when its rate limit is exceeded) and, for the API, NVD's published rate limit:
at most 5 requests in a rolling 30-second window without an API key, 50 with one
(https://nvd.nist.gov/developers/start-here). ``NVD_API_KEY`` goes in the ``apiKey`` header,
never in a URL, a log line or a report.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
import urllib.error
import urllib.parse
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog
from django.conf import settings
from django.db.models import Max
from django.utils import timezone

from apps.advisories.feeds import FeedError
from apps.advisories.models import NvdCve, NvdSyncState
from apps.advisories.nvd.services import NvdReport, nvd_import
from apps.advisories.osv.sources import _download
from apps.core.breakers import Breaker, CircuitBreakerError

log = structlog.get_logger(__name__)

#: NVD's rate limits: requests in a rolling window of 30 s, without and with an API key.
NVD_WINDOW_S = 30.0
NVD_REQUESTS_WITHOUT_KEY = 5
NVD_REQUESTS_WITH_KEY = 50
#: The CVE API's page size limit and its longest lastModified window.
NVD_API_PAGE = 2_000
NVD_API_MAX_WINDOW = timedelta(days=120)


def _is_nvd_outage(exc: BaseException) -> bool:
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code >= 500 or exc.code in (403, 429)
    return isinstance(exc, OSError)


NVD_BREAKER = Breaker(
    "nvd", failure_threshold=getattr(settings, "BREAKER_NVD_FAILURES", 3),
    recovery_timeout=getattr(settings, "BREAKER_NVD_RESET_S", 600.0), is_failure=_is_nvd_outage)


class RateLimit:
    """At most ``requests`` calls of ``acquire`` in any rolling ``window_s`` seconds: a call
    that would exceed it sleeps until the oldest one leaves the window. Per process (the
    beat job runs in one worker at a time)."""

    def __init__(self, requests: int, window_s: float, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.requests, self.window_s = requests, window_s
        self.clock, self.sleep = clock, sleep
        self._sent: deque[float] = deque()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Wait for a slot; returns the seconds waited."""
        waited = 0.0
        with self._lock:
            while True:
                now = self.clock()
                while self._sent and now - self._sent[0] >= self.window_s:
                    self._sent.popleft()
                if len(self._sent) < self.requests:
                    self._sent.append(now)
                    return waited
                pause = self.window_s - (now - self._sent[0])
                self.sleep(pause)
                waited += pause


_LIMITS: dict[int, RateLimit] = {}


def api_rate_limit() -> RateLimit:
    """The process's limiter for NVD's API: 50 requests per 30 s with a key, else 5."""
    requests = NVD_REQUESTS_WITH_KEY if settings.NVD_API_KEY else NVD_REQUESTS_WITHOUT_KEY
    return _LIMITS.setdefault(requests, RateLimit(requests, NVD_WINDOW_S))


def _get(url: str, target: Path, headers: dict[str, str], limit: RateLimit | None) -> None:
    if limit is not None:  # a slot only for a request that is really sent
        limit.acquire()
    _download(url, target, timeout=settings.NVD_TIMEOUT_S,
              max_bytes=settings.ADVISORY_MAX_DOWNLOAD_BYTES, headers=headers)


def _fetch(url: str, target: Path, *, headers: dict[str, str],
           limit: RateLimit | None = None) -> str:
    """Download through the breaker (and ``limit``); returns why it failed, or "" when it
    did not."""
    try:
        NVD_BREAKER.guard(_get, url, target, headers, limit)
    except CircuitBreakerError:
        return (f"download skipped: NVD downloads failed {NVD_BREAKER.failure_count} times "
                f"in a row; next attempt in {max(NVD_BREAKER.open_remaining, 0)} s")
    except urllib.error.HTTPError as exc:
        return f"download failed: HTTP {exc.code} {exc.reason}"
    except (OSError, ValueError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        return f"download failed: {reason}"
    return ""


def _absorb(report: NvdReport, part: NvdReport) -> None:
    report.merge(part)
    report.sources += part.sources
    report.unreadable_sources += part.unreadable_sources


def _failed(report: NvdReport, where: str, reason: str) -> NvdReport:
    report.unreadable_sources.append(FeedError(where, reason))
    report.sources.append({"path": where, "unreadable": reason})
    report.unreadable = "; ".join(f.reason for f in report.unreadable_sources)
    log.warning("advisories.nvd_sync_failed", where=where, reason=reason)
    return report


def _sync_feed(workdir: Path) -> NvdReport:
    url = settings.NVD_FEED_URL
    target = workdir / (Path(urllib.parse.urlsplit(url).path).name[-100:] or "nvd-feed")
    reason = _fetch(url, target, headers={})
    if reason:
        return _failed(NvdReport(feed="nvd"), url, reason)
    return nvd_import(paths=[target])


def _api_time(moment: datetime) -> str:
    # NVD's extended ISO-8601 with an explicit offset (urlencode turns "+" into %2B).
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+00:00")


def _sync_api(workdir: Path, *, now: datetime) -> NvdReport:
    report = NvdReport(feed="nvd")
    state, _ = NvdSyncState.objects.get_or_create(name="api")
    start = (state.synced_through
             or NvdCve.objects.aggregate(latest=Max("last_modified"))["latest"]
             or now - NVD_API_MAX_WINDOW)
    headers = {"apiKey": settings.NVD_API_KEY} if settings.NVD_API_KEY else {}
    limit = api_rate_limit()
    pages = 0
    while start < now:
        end = min(start + NVD_API_MAX_WINDOW, now)
        index = 0
        while True:
            query = urllib.parse.urlencode({
                "lastModStartDate": _api_time(start), "lastModEndDate": _api_time(end),
                "startIndex": index, "resultsPerPage": NVD_API_PAGE})
            url = f"{settings.NVD_API_URL}?{query}"
            pages += 1
            target = workdir / f"nvd-api-page-{pages}.json"
            reason = _fetch(url, target, headers=headers, limit=limit)
            if reason:
                return _failed(report, url, reason)
            page = nvd_import(paths=[target])
            target.unlink(missing_ok=True)
            _absorb(report, page)
            if page.unreadable:
                report.unreadable = page.unreadable
                return report  # the window is fetched again next time
            counts = page.sources[0]
            total = counts.get("total_results")
            index += max(counts.get("results_per_page") or counts.get("records") or 0, 1)
            if total is None or index >= total:
                break
        state.synced_through = end
        state.save(update_fields=["synced_through", "updated_at"])
        start = end
    return report


def nvd_sync(*, now: datetime | None = None) -> NvdReport:
    """Run the configured sync (``NVD_SYNC``: "feed" or "api"); a failed download is a
    report with ``unreadable`` set, never an exception."""
    workdir = Path(tempfile.mkdtemp(prefix="nvd-sync-"))
    try:
        if settings.NVD_SYNC == "api":
            return _sync_api(workdir, now=now or timezone.now())
        return _sync_feed(workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
