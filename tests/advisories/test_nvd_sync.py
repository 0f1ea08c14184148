"""The NVD beat job (issue 18): the "modified" feed or the CVE API 2.0, NVD's rate limits and
the ``nvd`` circuit breaker. NVD is out of reach here, so a local HTTP server plays it with
the fixture's records (a recorded response's shape, paginated as the API paginates)."""

from __future__ import annotations

import gzip
import http.server
import json
import threading
import urllib.parse
from datetime import UTC, datetime, timedelta

import pytest

from apps.advisories.models import Advisory, NvdCve, NvdSyncState
from apps.advisories.nvd import fetch
from apps.advisories.nvd.fetch import NVD_BREAKER, RateLimit, nvd_sync
from apps.advisories.services import advisories_import
from apps.advisories.tasks import advisories_sync_nvd
from tests.factories import ROOT, pypa_root
from tests.helpers import closed_port

FEED = ROOT / "tests" / "advisories" / "nvd_data" / "nvdcve-2.0-fixture.json"
NOW = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)

pytestmark = pytest.mark.django_db


def _nvd_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class _Nvd(http.server.BaseHTTPRequestHandler):
    """NVD's feed file and CVE API 2.0, as far as the job uses them."""

    records = json.loads(FEED.read_text())["vulnerabilities"]
    #: The API returns at most this many per page, whatever was asked (so pages show).
    page_size = 3
    status = 200
    requests: list[tuple[dict, dict]] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        # Header names are case-insensitive (urllib sends "Apikey"): kept lower-cased.
        type(self).requests.append((query, {k.lower(): v for k, v in self.headers.items()}))
        if self.status != 200:
            self.send_error(self.status)
            return
        if url.path.endswith(".json.gz"):
            body = gzip.compress(FEED.read_bytes())
        else:
            start, end = (_nvd_time(query["lastModStartDate"]),
                          _nvd_time(query["lastModEndDate"]))
            assert end - start <= timedelta(days=120)  # NVD refuses longer windows
            window = [r for r in self.records
                      if start <= _nvd_time(r["cve"]["lastModified"]) <= end]
            index = int(query["startIndex"])
            page = window[index:index + min(int(query["resultsPerPage"]), self.page_size)]
            body = json.dumps({"resultsPerPage": len(page), "startIndex": index,
                               "totalResults": len(window), "format": "NVD_CVE",
                               "version": "2.0", "timestamp": "2026-12-01T02:00:00.000",
                               "vulnerabilities": page}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    """Each test starts with NVD's rate-limit windows empty (they are per process)."""
    fetch._LIMITS.clear()
    yield
    fetch._LIMITS.clear()


@pytest.fixture
def nvd():
    _Nvd.requests, _Nvd.status = [], 200
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Nvd)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def pyyaml(db):
    advisories_import(sources=[str(pypa_root() / "pyyaml" / "PYSEC-2021-142.yaml")])


def test_the_job_is_off_without_nvd_sync(settings):
    settings.NVD_SYNC = ""
    assert advisories_sync_nvd() == {"skipped": "NVD_SYNC is empty"}


def test_feed_mode_imports_the_modified_feed(nvd, pyyaml, settings):
    settings.NVD_SYNC = "feed"
    settings.NVD_FEED_URL = f"{nvd}/feeds/json/cve/2.0/nvdcve-2.0-modified.json.gz"
    result = advisories_sync_nvd()
    assert (result["rows"], result["created"], result["unreadable"]) == (7, 7, "")
    assert Advisory.objects.get(osv_id="PYSEC-2021-142").cvss_source == "nvd"
    again = advisories_sync_nvd()
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 7)


def test_api_mode_walks_lastmodified_windows_page_by_page_with_the_key(nvd, pyyaml, settings):
    settings.NVD_SYNC = "api"
    settings.NVD_API_URL = f"{nvd}/rest/json/cves/2.0"
    settings.NVD_API_KEY = "test-key-0000"
    report = nvd_sync(now=NOW)
    assert (report.rows, report.created, report.unreadable) == (7, 7, "")
    # 7 records at most 3 a page: three requests, startIndex 0, 3, 6, one 120-day window.
    queries = [q for q, _ in _Nvd.requests]
    assert [q["startIndex"] for q in queries] == ["0", "3", "6"]
    assert {q["lastModEndDate"] for q in queries} == {"2026-12-01T02:00:00.000+00:00"}
    assert {q["lastModStartDate"] for q in queries} == {"2026-08-03T02:00:00.000+00:00"}
    assert {q["resultsPerPage"] for q in queries} == {"2000"}
    # The key travels in the apiKey header, never in the URL.
    assert all(h.get("apikey") == "test-key-0000" for _, h in _Nvd.requests)
    assert not any("test-key" in json.dumps(q) for q in queries)
    assert "test-key" not in json.dumps(report.as_dict())
    assert NvdSyncState.objects.get(name="api").synced_through == NOW
    assert Advisory.objects.get(osv_id="PYSEC-2021-142").cvss_score == 9.8

    # The next run starts where this one ended: nothing new, nothing written.
    _Nvd.requests = []
    later = nvd_sync(now=NOW + timedelta(hours=2))
    assert (later.rows, later.created, later.updated) == (0, 0, 0)
    assert [q["lastModStartDate"] for q, _ in _Nvd.requests] == [
        "2026-12-01T02:00:00.000+00:00"]


def test_api_mode_splits_a_long_absence_into_120_day_windows(nvd, db, settings):
    settings.NVD_SYNC = "api"
    settings.NVD_API_URL = f"{nvd}/rest/json/cves/2.0"
    settings.NVD_API_KEY = ""
    NvdSyncState.objects.create(name="api", synced_through=NOW - timedelta(days=300))
    report = nvd_sync(now=NOW)
    windows = sorted({(q["lastModStartDate"], q["lastModEndDate"]) for q, _ in _Nvd.requests})
    assert len(windows) == 3 and report.created == 7
    assert "apikey" not in _Nvd.requests[0][1]


def test_an_outage_keeps_the_cursor_and_opens_the_breaker(nvd, db, settings):
    settings.NVD_SYNC = "api"
    settings.NVD_API_URL = f"{nvd}/rest/json/cves/2.0"
    _Nvd.status = 503
    report = nvd_sync(now=NOW)
    assert report.unreadable == "download failed: HTTP 503 Service Unavailable"
    assert NvdSyncState.objects.get(name="api").synced_through is None
    # NVD answers 403 when its rate limit is exceeded: an outage too, not a bad request.
    _Nvd.status = 403
    for _ in range(settings.BREAKER_NVD_FAILURES - 1):
        assert nvd_sync(now=NOW).unreadable.startswith("download failed: HTTP 403")
    asked = len(_Nvd.requests)
    skipped = nvd_sync(now=NOW).unreadable
    assert skipped.startswith("download skipped: NVD downloads failed 3 times in a row")
    assert len(_Nvd.requests) == asked  # refused at once, NVD not asked
    assert NVD_BREAKER.state == "open" and not NvdCve.objects.exists()

    NVD_BREAKER.reset()
    settings.NVD_SYNC = "feed"
    settings.NVD_FEED_URL = f"http://127.0.0.1:{closed_port()}/nvdcve-2.0-modified.json.gz"
    assert advisories_sync_nvd()["unreadable"].startswith("download failed")


def test_the_rate_limit_keeps_nvds_rolling_window():
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limit = RateLimit(5, 30.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):  # NVD without a key: 5 requests in any 30 s
        assert limit.acquire() == 0
        now[0] += 1.0
    assert limit.acquire() == pytest.approx(25.0)  # the first left the window at t=30
    assert slept == [pytest.approx(25.0)]
    now[0] += 30.0
    assert limit.acquire() == 0
