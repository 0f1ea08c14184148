"""Benchmark: import a yearly-feed-sized NVD file (synthetic), then re-import it.

    .venv/bin/python benchmarks/import_nvd.py [--records 30000]

Builds ``nvdcve-2.0-bench.json.gz`` with ``--records`` SYNTHETIC CVE records in NVD's JSON 2.0
syntax (tests/advisories/nvd_feed.py, plus CPE configurations and references so a record
weighs what NVD's do), imports it into an empty ``NvdCve`` table, imports it again (must
write nothing), and prints times and this process's peak RSS (the stream's memory bound,
docs/nvd.md).
"""

from __future__ import annotations

import argparse
import gzip
import json
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from _setup import ROOT, django_on_bench_database, machine


def _feed(path: Path, records: int) -> int:
    """Write the feed one record at a time (so this process's peak RSS is the import's)."""
    sys.path.insert(0, str(ROOT))
    from tests.advisories.nvd_feed import TIMESTAMP, build_feed

    written = 0
    with path.open("wb") as handle, gzip.GzipFile(fileobj=handle, mode="wb", mtime=0) as gz:
        def write(text: str) -> None:
            nonlocal written
            written += gz.write(text.encode())

        write(json.dumps({"resultsPerPage": records, "startIndex": 0, "totalResults": records,
                          "format": "NVD_CVE", "version": "2.0",
                          "timestamp": TIMESTAMP})[:-1] + ', "vulnerabilities": [')
        for index in range(records):
            item = build_feed([f"CVE-2023-{index + 1:05d}"])["vulnerabilities"][0]
            cve = item["cve"]
            cve["configurations"] = [{"nodes": [{"operator": "OR", "negate": False,
                                                 "cpeMatch": [
                {"vulnerable": True,
                 "criteria": f"cpe:2.3:a:vendor{index}:product:{v}.0:*:*:*:*:*:*:*",
                 "matchCriteriaId": "0D0C3B8E-1234-4C6F-9C3A-1A2B3C4D5E6F",
                 "versionEndExcluding": f"{v}.1"} for v in range(1 + index % 40)]}]}]
            cve["references"] += [{"url": f"https://example.org/advisory/{index}/{k}",
                                   "source": "cve@mitre.org", "tags": ["Third Party Advisory"]}
                                  for k in range(8)]
            write(("," if index else "") + json.dumps(item))
        write("]}")
    return written


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=30_000)
    args = parser.parse_args()
    django_on_bench_database()
    from django.db import connection

    from apps.advisories.models import NvdCve
    from apps.advisories.nvd.services import nvd_import

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "nvdcve-2.0-bench.json.gz"
        size = _feed(path, args.records)
        gzip_size = path.stat().st_size
        NvdCve.objects.all().delete()
        started = time.perf_counter()
        first = nvd_import(paths=[path])
        first_s = time.perf_counter() - started
        started = time.perf_counter()
        second = nvd_import(paths=[path])
        second_s = time.perf_counter() - started
    assert first.created == args.records and not first.unreadable, first.as_dict()
    assert second.created == second.updated == 0, second.as_dict()
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        server = cursor.fetchone()[0]
    print(json.dumps({
        "benchmark": "import_nvd", "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(), "database": f"PostgreSQL {server}", "records": args.records,
        "json_bytes": size, "gzip_bytes": gzip_size,
        "first_import_s": round(first_s, 2), "unchanged_reimport_s": round(second_s, 2),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }, indent=2))


if __name__ == "__main__":
    main()
