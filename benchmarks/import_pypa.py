"""Benchmark: import the whole PyPA advisory database into PostgreSQL, then re-import it.

    .venv/bin/python benchmarks/import_pypa.py [--runs 3]

Each run starts from empty advisory tables. Aims (issue 3): first import < 30 s,
unchanged re-import < 5 s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import UTC, datetime

from _setup import django_on_bench_database, machine, pypa_root


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    django_on_bench_database()
    from django.db import connection

    from apps.advisories.models import Advisory
    from apps.advisories.services import advisories_import
    from apps.reviews.models import APV

    root = pypa_root()
    firsts, seconds = [], []
    for _ in range(args.runs):
        APV.objects.all().delete()
        Advisory.objects.all().delete()
        started = time.perf_counter()
        first = advisories_import(sources=[str(root)], source_name="pypa")
        firsts.append(time.perf_counter() - started)
        started = time.perf_counter()
        second = advisories_import(sources=[str(root)], source_name="pypa")
        seconds.append(time.perf_counter() - started)
        assert second.created == second.updated == 0, second.as_dict()
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        server = cursor.fetchone()[0]
    print(json.dumps({
        "benchmark": "import_pypa", "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(), "database": f"PostgreSQL {server}", "runs": args.runs,
        "records": first.created + first.failed, "created": first.created,
        "failed": first.failed,
        "first_import_s": {"median": round(statistics.median(firsts), 2),
                           "max": round(max(firsts), 2)},
        "unchanged_reimport_s": {"median": round(statistics.median(seconds), 2),
                                 "max": round(max(seconds), 2)},
    }, indent=2))


if __name__ == "__main__":
    main()
