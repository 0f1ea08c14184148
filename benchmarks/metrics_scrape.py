"""Benchmark: what one Prometheus scrape of /metrics costs with a production-sized database.

    .venv/bin/python benchmarks/metrics_scrape.py [--apvs 10000] [--runs 5000] [--scrapes 30]

The domain metrics (apps/core/metrics.py) are counted in the database at scrape time, so
their cost grows with the tables. This fills the benchmark database (BENCH_DATABASE_URL)
with synthetic rows in the real tables — APVs spread over every status and severity, half
past their SLA; finished wargame runs with durations; decisions with their audit rows;
predictions with latencies — then scrapes /metrics through Django's test client as a staff
user, counting the SQL queries and timing each scrape (server time, no network).
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import time
from datetime import UTC, datetime, timedelta

from _setup import django_on_bench_database, machine


def seed(apvs: int, runs: int) -> dict[str, int]:
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from apps.advisories.models import Advisory
    from apps.decisions.models import Decision, DecisionAudit
    from apps.inventory.models import Dependency, Project
    from apps.ml.models import Prediction
    from apps.reviews.models import APV, APVStatus, Patch
    from apps.wargaming.models import WargameRun

    rng = random.Random(42)  # noqa: S311 (benchmark data)
    now = datetime.now(UTC)
    with transaction.atomic():
        for model in (DecisionAudit, Decision, Prediction, WargameRun):
            model.objects.all().delete()
        Patch.objects.all().delete()
        APV.objects.all().delete()
        Dependency.objects.all().delete()
        Project.objects.all().delete()
        Advisory.objects.filter(osv_id__startswith="BENCH-").delete()
        user, _ = get_user_model().objects.get_or_create(
            username="bench-staff", defaults={"is_staff": True, "is_superuser": True})
        project = Project.objects.create(name="bench-metrics", path="/nonexistent")
        advisory = Advisory.objects.create(osv_id="BENCH-0001", summary="bench",
                                           modified=now, published=now, source="bench",
                                           content_hash="0" * 64, raw={})
        deps = Dependency.objects.bulk_create(
            Dependency(project=project, name=f"pkg{i}", normalised_name=f"pkg{i}",
                       version="1.0", ecosystem="PyPI", manifest_path="requirements.txt")
            for i in range(apvs))
        statuses = list(APVStatus.values)
        severities = ["critical", "high", "medium", "low", "unknown"]
        rows = APV.objects.bulk_create(
            APV(code=f"APV-BENCH-{i:06d}", project=project, dependency=dep, advisory=advisory,
                status=statuses[i % len(statuses)], severity=severities[i % len(severities)],
                priority=50,
                sla_due_at=now + timedelta(days=(-10 if i % 2 else 10)))
            for i, dep in enumerate(deps))
        patch = Patch.objects.create(project=project, strategy="dependency_upgrade",
                                     revision=1, title="bench")
        WargameRun.objects.bulk_create(
            WargameRun(patch=patch, kind=("package", "http")[i % 2], state="finished",
                       verdict=("patch_effective", "patch_ineffective", "error")[i % 3],
                       duration_s=rng.uniform(0.3, 900.0)) for i in range(runs))
        Prediction.objects.bulk_create(
            Prediction(patch=patch, patch_revision=1, threshold=0.8, route="ml", reason="r",
                       features={}, feature_hash="h", trigger="bench",
                       latency_ms=rng.uniform(0.2, 40.0)) for _ in range(runs))
        decided = rows[: apvs // 2]
        decisions = Decision.objects.bulk_create(
            Decision(apv=apv, decision=("approve", "reject", "false_positive")[i % 3],
                     justification="bench", reviewer=user, decided_at=now,
                     action_taken="none", status_before="pending_review",
                     status_after="approved", review_seconds=rng.uniform(30, 10 * 86400))
            for i, apv in enumerate(decided))
        DecisionAudit.objects.bulk_create(
            DecisionAudit(decision=d, reviewer_username=user.username, recorded_at=now,
                          via=("api", "admin", "command")[i % 3], snapshot={})
            for i, d in zip(itertools.count(), decisions))
    return {"apvs": apvs, "wargame_runs": runs, "predictions": runs,
            "decisions": len(decisions)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--apvs", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5_000)
    parser.add_argument("--scrapes", type=int, default=30)
    args = parser.parse_args()
    django_on_bench_database()
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    rows = seed(args.apvs, args.runs)
    client = Client()
    client.force_login(get_user_model().objects.get(username="bench-staff"))
    client.get("/metrics")  # warm: imports, session, plans
    timings, queries = [], []
    for _ in range(args.scrapes):
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            response = client.get("/metrics")
            timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.status_code
        queries.append(len(captured))
    domain = [q["sql"] for q in captured.captured_queries
              if "auth_" not in q["sql"] and "django_session" not in q["sql"]]
    print(json.dumps({
        "benchmark": "metrics_scrape", "date": datetime.now(UTC).date().isoformat(),
        "machine": machine(), "rows": rows, "scrapes": args.scrapes,
        "queries_per_scrape": max(queries), "domain_queries": len(domain),
        "bytes": len(response.content),
        "ms": {"median": round(statistics.median(timings), 1),
               "p95": round(sorted(timings)[int(0.95 * (len(timings) - 1))], 1),
               "max": round(max(timings), 1)},
    }, indent=2))


if __name__ == "__main__":
    main()
