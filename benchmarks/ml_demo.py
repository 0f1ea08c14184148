"""Benchmark: ``manage.py demo`` from a fresh install, run again, and installed anew with
the wargame environments already built; then the in-process latency of an ML-first
prediction.

    .venv/bin/python benchmarks/ml_demo.py [--rounds 200]

1. Fresh install: a new PostgreSQL database, a new data folder, an empty wargame
   environment folder and an empty uv cache (every package is downloaded from PyPI, PyYAML
   built from source).
2. Second run: the same again (nothing is added; every run exists).
3. New install, cached environments: another new database and data folder, the same
   environment folder and uv cache (every wargame runs again, on reused environments).

Latency is ``apps.ml.services.estimate`` (what routing times and stores) in this process,
with the model of run 1 loaded, over the stored features of every patch it predicted: a
miss (cache look-up, one batched predict_proba for the probability and the feature
effects, cache write) and a hit (the cached answer). Set REDIS_URL to use Redis as the
cache, as in production. Aims (issue 7): demo < 5 minutes on 2 cores; p95 < 5 ms. The
JSON summary is printed last.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime

from _setup import DEFAULT_URL, ROOT, machine


def _fresh_database(suffix: str) -> str:
    import psycopg

    url = DEFAULT_URL + suffix
    name, admin = url.rsplit("/", 1)[1], url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return url


def _folder(prefix: str) -> str:
    path = tempfile.mkdtemp(prefix=prefix)
    os.chmod(path, 0o755)  # noqa: S103 (the sandbox user must reach the environments in it)
    return path


def _manage(env: dict, *args: str) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=True)
    return round(time.perf_counter() - started, 1), done.stdout


def _percentiles(values: list[float]) -> dict[str, float]:
    q = statistics.quantiles(values, n=100)
    return {"p50": round(statistics.median(values), 3), "p95": round(q[94], 3),
            "p99": round(q[98], 3), "n": len(values)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--latency-only", action="store_true",
                        help="measure the latency on the database of the last run")
    args = parser.parse_args()
    envs, uv_cache = _folder("immune-bench-envs-"), _folder("immune-bench-uvcache-")
    base = {**os.environ, "WARGAME_ENV_DIR": envs, "UV_CACHE_DIR": uv_cache,
            "CELERY_TASK_ALWAYS_EAGER": "true", "LOG_LEVEL": "WARNING"}
    first = {**base, "DATABASE_URL": DEFAULT_URL + "_ml",
             "IMMUNE_DATA_DIR": _folder("immune-bench-demo-")}
    timings = {}
    if not args.latency_only:
        first["DATABASE_URL"] = _fresh_database("_ml")
        second = {**base, "DATABASE_URL": _fresh_database("_ml2"),
                  "IMMUNE_DATA_DIR": _folder("immune-bench-demo-")}
        _manage(first, "migrate", "--noinput")
        timings["fresh install"], output = _manage(first, "demo")
        print(output)
        timings["second run"], _ = _manage(first, "demo")
        _manage(second, "migrate", "--noinput")
        timings["new install, cached environments"], _ = _manage(second, "demo")
        for label, seconds in timings.items():
            print(f"demo, {label}: {seconds} s")

    os.environ.update({k: first[k] for k in ("DATABASE_URL", "IMMUNE_DATA_DIR", "LOG_LEVEL")})
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "immune.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.cache import cache

    from apps.ab_testing.selectors import accuracy_report
    from apps.ml import services
    from apps.ml.models import ModelVersion, Prediction

    model = ModelVersion.objects.get(is_active=True)
    features = [p.features for p in Prediction.objects.filter(model_version=model)]
    services.model_load(model)  # the process keeps the loaded pipeline, as a worker does
    miss, hit = [], []
    for _ in range(args.rounds):
        for f in features:
            cache.delete(services.prediction_cache_key(model, f))
            result = services.estimate(model, f)
            assert not result.cached
            miss.append(result.latency_ms)
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
                  "cv_folds": model.cv_folds, "parameters": model.parameters,
                  "cv_accuracy": model.cv_accuracy, "cv_precision": model.cv_precision,
                  "cv_recall": model.cv_recall, "cv_f1": model.cv_f1,
                  "cv_roc_auc": model.cv_roc_auc, "cv_brier": model.cv_brier,
                  "candidates": model.candidates},
        "routes": {
            "no model (wargame)": Prediction.objects.filter(model_version=None).count(),
            **{f"model: {r}": Prediction.objects.filter(model_version=model, route=r).count()
               for r in ("ml", "wargame")}},
        "ab": {k: report[k] for k in ("confusion_matrix", "sample_size", "accuracy",
                                      "accuracy_ci95", "precision", "recall", "f1",
                                      "not_counted")},
        "prediction_ms": {"miss": _percentiles(miss), "hit": _percentiles(hit),
                          "cache": cache.__class__.__name__,
                          "redis": bool(os.environ.get("REDIS_URL"))},
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
