"""Benchmark: server time to render the review queue with 1,000 pending APVs.

    .venv/bin/python benchmarks/queue_render.py [--runs 20]

Real APVs: the PyPA advisories are imported and a repository pinning every PyPA package at
an old version is scanned (as in scan_10k.py); 1,000 of the APVs are put in
pending_review, the rest resolved. The queue is rendered in-process through Django's test
client as a logged-in reviewer: the default page (100 rows) and ``?all`` (all 1,000 rows).
Aim (issue 5): 1,000 pending APVs in under 300 ms server time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import UTC, datetime

from _setup import django_on_bench_database, git_repo_with, machine, pypa_root
from scan_10k import requirements

PENDING = 1_000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    django_on_bench_database()
    import io

    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from apps.advisories.models import Advisory, AffectedPackage
    from apps.advisories.services import advisories_import
    from apps.decisions.models import Decision, DecisionAudit
    from apps.inventory.models import Dependency, Project
    from apps.inventory.services import project_add, project_scan
    from apps.reviews.models import APV, Patch

    if not Advisory.objects.exists():
        advisories_import(sources=[str(pypa_root())], source_name="pypa")
    DecisionAudit.objects.all().delete()
    Decision.objects.all().delete()
    APV.objects.all().delete()
    Patch.objects.all().delete()
    Dependency.objects.all().delete()
    Project.objects.all().delete()
    names = sorted(set(AffectedPackage.objects.values_list("normalised_name", flat=True)))
    with git_repo_with({"requirements.txt": requirements(names)}) as repo:
        project_scan(project=project_add(name="bench", path=str(repo)))
    ids = list(APV.objects.order_by("code").values_list("pk", flat=True))
    assert len(ids) >= PENDING, len(ids)
    APV.objects.filter(pk__in=ids[:PENDING]).update(status="pending_review",
                                                     pending_review_at=datetime.now(UTC))
    APV.objects.filter(pk__in=ids[PENDING:]).update(status="resolved")
    call_command("create_reviewer", "bench-reviewer", stdout=io.StringIO())
    from django.contrib.auth import get_user_model

    client = Client()
    client.force_login(get_user_model().objects.get(username="bench-reviewer"))

    results = {}
    for label, params in (("page_100_rows", {}), ("all_1000_rows", {"all": ""})):
        timings, queries = [], 0
        for i in range(args.runs + 2):
            with CaptureQueriesContext(connection) as ctx:
                started = time.perf_counter()
                response = client.get("/admin/reviews/apv/", params)
                elapsed = time.perf_counter() - started
            assert response.status_code == 200
            rows = response.content.decode().count('class="apv-code')
            if i >= 2:  # the first two warm caches and templates
                timings.append(elapsed * 1000)
            queries = len(ctx.captured_queries)
        results[label] = {"rows": rows, "queries": queries,
                          "median_ms": round(statistics.median(timings), 1),
                          "p95_ms": round(sorted(timings)[int(0.95 * (len(timings) - 1))], 1),
                          "max_ms": round(max(timings), 1)}
    print(json.dumps({"benchmark": "queue_render",
                      "date": datetime.now(UTC).isoformat(timespec="seconds"),
                      "machine": machine(), "pending_apvs": PENDING, "runs": args.runs,
                      **results}, indent=2))


if __name__ == "__main__":
    main()
