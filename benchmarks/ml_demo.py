"""Benchmark: ``manage.py demo`` from a fresh install (cold and second run), and the
in-process latency of an ML-first prediction.

    .venv/bin/python benchmarks/ml_demo.py [--rounds 200]

Fresh install = a new PostgreSQL database (``immune_bench_ml``, dropped and created), a new
data folder (so no wargame environment exists) and an empty uv cache (every package is
downloaded from PyPI and PyYAML built from source). The second run reuses all of it.
Latency is ``apps.ml.services.estimate`` (what routing times and stores) in this process,
with the model the demo trained loaded, over the stored features of every patch it
predicted: a miss (cache look-up, then one batched predict_proba for the probability and
the feature effects, then the cache write) and a hit (the cached answer). Set REDIS_URL to
measure with Redis as the cache, as in production. Aims (issue 7):
demo < 5 minutes on 2 cores; prediction p95 < 5 ms. Prints a JSON summary last.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from _setup import DEFAULT_URL, machine


def _fresh_database() -> str:
    import psycopg

    url = os.environ.get("BENCH_ML_DATABASE_URL", DEFAULT_URL + "_ml")
    name, admin = url.rsplit("/", 1)[1], url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return url


def _percentiles(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    q = statistics.quantiles(values, n=100)
    return {"p50": round(statistics.median(values), 3), "p95": round(q[94], 3),
            "p99": round(q[98], 3), "n": len(values)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    os.environ["DATABASE_URL"] = _fresh_database()
    data = tempfile.mkdtemp(prefix="immune-bench-demo-")
    os.chmod(data, 0o755)  # noqa: S103 (the sandbox user must reach the environments in it)
    os.environ["IMMUNE_DATA_DIR"] = data
    os.environ["UV_CACHE_DIR"] = tempfile.mkdtemp(prefix="immune-bench-uvcache-")
    # Routing's runs execute in this process (the demo runs what it queues in any case).
    os.environ["CELERY_TASK_ALWAYS_EAGER"] = "true"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "immune.settings")
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import django

    django.setup()
    from django.core.cache import cache
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    timings = {}
    for label in ("fresh install", "second run"):
        started = time.perf_counter()
        out = io.StringIO()
        call_command("demo", stdout=out)
        timings[label] = round(time.perf_counter() - started, 1)
        print(f"demo, {label}: {timings[label]} s")
        if label == "fresh install":
            print(out.getvalue())

    from apps.ab_testing.selectors import accuracy_report
    from apps.ml import services
    from apps.ml.features import feature_hash
    from apps.ml.models import ModelVersion, Prediction

    model = ModelVersion.objects.get(is_active=True)
    features = [p.features for p in Prediction.objects.filter(model_version=model)]
    services.model_load(model)  # the process keeps the loaded pipeline, as a worker does
    miss, hit = [], []
    for _ in range(args.rounds):
        for f in features:
            cache.delete(f"ml:prediction:v{model.version}:{feature_hash(f)}")
            result = services.estimate(model, f)
            assert not result.cached
            miss.append(result.latency_ms)
    cache.clear()
    for f in features:
        services.estimate(model, f)  # fill the cache
    for _ in range(args.rounds):
        for f in features:
            result = services.estimate(model, f)
            assert result.cached
            hit.append(result.latency_ms)
    report = accuracy_report()
    summary = {
        "machine": machine(), "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "demo_seconds": timings,
        "model": {"version": model.version, "algorithm": model.algorithm,
                  "training_size": model.training_size, "class_balance": model.class_balance,
                  "cv_folds": model.cv_folds, "cv_accuracy": model.cv_accuracy,
                  "cv_precision": model.cv_precision, "cv_recall": model.cv_recall,
                  "cv_f1": model.cv_f1, "cv_roc_auc": model.cv_roc_auc,
                  "cv_brier": model.cv_brier, "candidates": model.candidates},
        "routes": {r: Prediction.objects.filter(model_version=model, route=r).count()
                   for r in ("ml", "wargame")},
        "ab": {k: report[k] for k in ("confusion_matrix", "sample_size", "accuracy",
                                      "accuracy_ci95", "precision", "recall", "f1",
                                      "not_counted")},
        "prediction_ms": {"miss": _percentiles(miss), "hit": _percentiles(hit),
                          "cache": cache.__class__.__name__},
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
