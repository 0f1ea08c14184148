"""Benchmark: the wargame corpus, built from nothing, and the model trained from it.

    .venv/bin/python benchmarks/ml_corpus.py [--build] [--corpus data/corpus/wargames.jsonl]
                                             [--svg docs/images/calibration-corpus.svg]

``--build``: a new PostgreSQL database (``immune_bench_corpus``), the PyPA advisory database
imported (``IMMUNE_PYPA_DB``), an empty wargame environment folder and then
``manage.py build_corpus`` timed end to end (every environment built, every pair attacked),
written to a temporary file and compared, pair by pair, with ``--corpus`` (are the verdicts
reproducible?).

Always: a new database with the PyPA advisories, ``manage.py train_model --corpus FILE``,
and the figures docs/ml.md publishes (stratified and leave-one-package-out, per package,
with 95 % intervals, and the majority-class baseline beside them), printed as JSON; the
calibration chart written to ``--svg``; and the latency of ``apps.ml.services.estimate``
with that model, in this process, over the features of every corpus label (a miss: the
cached answer deleted first; a hit), ``--rounds`` times (the prediction cache is Redis when
REDIS_URL is set).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from _setup import ROOT, machine

PYPA = os.environ.get("IMMUNE_PYPA_DB") or str(ROOT.parent / "shared" / "data" /
                                               "pypa-advisory-db" / "vulns")
BASE = "postgres://postgres@127.0.0.1:5432/"


def _fresh_database(name: str) -> str:
    import psycopg

    with psycopg.connect(BASE + "postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return BASE + name


def _manage(env: dict, *args: str) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{done.stdout[-3000:]}\n"
                         f"{done.stderr[-3000:]}")
    return round(time.perf_counter() - started, 1), done.stdout


def _environment(database: str, **extra: str) -> dict:
    return {**os.environ, "DATABASE_URL": database, "LOG_LEVEL": "WARNING", **extra}


def _rows(path: Path) -> dict[tuple, str]:
    rows = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            row = json.loads(line)
            rows[(row["package"], row["vulnerable_version"], row["candidate_version"],
                  row["exploit"])] = row["verdict"]
    return rows


def build(corpus: Path) -> dict:
    env_dir = tempfile.mkdtemp(prefix="immune-corpus-envs-")
    os.chmod(env_dir, 0o755)  # noqa: S103 (the sandbox user reads the environments)
    env = _environment(_fresh_database("immune_bench_corpus"), WARGAME_ENV_DIR=env_dir)
    _manage(env, "migrate", "-v0")
    _manage(env, "import_advisories", PYPA)
    out = Path(tempfile.mkdtemp()) / "wargames.jsonl"
    seconds, text = _manage(env, "build_corpus", "--output", str(out))
    fresh, committed = _rows(out), _rows(corpus) if corpus.is_file() else {}
    both = set(fresh) & set(committed)
    differ = sorted(k for k in both if fresh[k] != committed[k])
    return {"seconds": seconds, "minutes": round(seconds / 60, 1), "runs": len(fresh),
            "verdicts": dict(Counter(fresh.values())), "summary": text.strip().splitlines()[-1],
            "compared_with": str(corpus), "pairs_in_both": len(both),
            "same_verdict": len(both) - len(differ),
            "different_verdict": [{"pair": list(k), "now": fresh[k], "committed": committed[k]}
                                  for k in differ],
            "environment_folder": env_dir}


def _percentiles(samples: list[float]) -> dict:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)

    return {"n": len(ordered), "p50_ms": at(0.50), "p95_ms": at(0.95), "p99_ms": at(0.99)}


def latency(corpus: Path, rounds: int) -> dict:
    """``estimate`` over the corpus labels' features with the model just trained (active)."""
    from django.core.cache import cache

    from apps.ml import services
    from apps.ml.features import row_features
    from apps.wargaming.corpus import read_corpus

    model = services.active_model()
    features = [f for row in read_corpus(corpus) if row["verdict"] in services.LABELS
                and (f := row_features(row)) is not None]
    services.model_load(model)  # loaded once, as in a worker
    miss, hit = [], []
    for _ in range(rounds):
        for item in features:
            cache.delete(services.prediction_cache_key(model, item))
            miss.append(services.estimate(model, item).latency_ms)
            hit.append(services.estimate(model, item).latency_ms)
    return {"miss": _percentiles(miss), "hit": _percentiles(hit),
            "cache": cache.__class__.__name__}


def train(corpus: Path, svg: Path | None, rounds: int) -> dict:
    env = _environment(_fresh_database("immune_bench_corpus_model"))
    _manage(env, "migrate", "-v0")
    _manage(env, "import_advisories", PYPA)
    _manage(env, "import_advisories", str(ROOT / "apps" / "wargaming" / "demo_service" /
                                          "advisories"))
    seconds, text = _manage(env, "train_model", "--corpus", str(corpus), "--json")
    summary = json.loads(text)
    evaluation = summary["evaluation"]
    balance = summary["class_balance"]
    majority = max(balance.values()) / sum(balance.values())
    os.environ["DATABASE_URL"] = env["DATABASE_URL"]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "immune.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    timing = latency(corpus, rounds) if rounds else None
    if svg is not None:
        from apps.ml.charts import calibration_svg

        svg.parent.mkdir(parents=True, exist_ok=True)
        svg.write_text(calibration_svg(evaluation, title=(
            f"Calibration of model v{summary['version']} ({summary['algorithm']}), "
            f"{summary['training_size']} corpus labels")) + "\n")

    def figures(e: dict | None) -> dict | None:
        if not e:
            return None
        return {k: e[k] for k in ("scheme", "n", "accuracy", "accuracy_ci95", "precision",
                                  "recall", "f1", "roc_auc", "brier", "brier_ci95", "ece")}

    grouped = evaluation.get("grouped") or {}
    return {"training_seconds": seconds, "algorithm": summary["algorithm"],
            "training_size": summary["training_size"], "class_balance": balance,
            "majority_class_accuracy": round(majority, 4),
            "sources": summary["training_sources"], "selected_by": evaluation["selected_by"],
            "stratified": figures(evaluation["stratified"]), "grouped": figures(grouped),
            "per_package": grouped.get("per_package"),
            "calibration": {k: (evaluation.get(k) or {}).get("calibration")
                            for k in ("stratified", "grouped")},
            "prediction_latency": timing, "candidates": summary["candidates"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", action="store_true")
    parser.add_argument("--corpus", default=str(ROOT / "data" / "corpus" / "wargames.jsonl"))
    parser.add_argument("--svg", default=str(ROOT / "docs" / "images" /
                                             "calibration-corpus.svg"))
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    corpus = Path(args.corpus)
    result = {"machine": machine(), "at": datetime.now(UTC).isoformat(timespec="minutes")}
    if args.build:
        result["build"] = build(corpus)
    result["model"] = train(corpus, Path(args.svg) if args.svg else None, args.rounds)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
