"""Benchmark: wall time of a package wargame and an HTTP wargame, cold and warm.

    .venv/bin/python benchmarks/wargame_timing.py

Package: PyYAML 5.3.1 → 5.4 with the built-in PoC. Cold = fresh environment folder (the
environments are built: uv resolves, downloads or takes from its cache, and builds PyYAML
5.3.1 from source with Cython<3); warm = the same pair again (environments reused).
HTTP: the demo service's CWE-89 effective patch (service started from both revisions,
the SQL-injection exploit, the regression tests). Aims (issue 6): warm package wargame
< 3 s, cold < 30 s.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from _setup import django_on_bench_database, machine


def main() -> None:
    envs = Path(tempfile.mkdtemp(prefix="immune-bench-envs-"))
    data = Path(tempfile.mkdtemp(prefix="immune-bench-data-"))
    os.environ["WARGAME_ENV_DIR"] = str(envs)
    os.environ["IMMUNE_DATA_DIR"] = str(data)
    django_on_bench_database()
    from django.core.management import call_command

    from apps.reviews.models import APV, Patch
    from apps.wargaming.models import WargameRun
    from apps.wargaming.services import wargame_execute, wargame_run_package, wargame_start

    def package_run() -> tuple[float, str]:
        started = time.perf_counter()
        run = wargame_run_package(package="pyyaml", vulnerable="5.3.1", fixed="5.4")
        return time.perf_counter() - started, run.verdict

    # Coldest: an empty uv cache too (downloads from PyPI, PyYAML 5.3.1 built from source).
    uv_cache = Path(tempfile.mkdtemp(prefix="immune-bench-uvcache-"))
    os.environ["UV_CACHE_DIR"] = str(uv_cache)
    coldest, coldest_verdict = package_run()
    del os.environ["UV_CACHE_DIR"]
    shutil.rmtree(uv_cache, ignore_errors=True)
    shutil.rmtree(envs, ignore_errors=True)
    # Cold: a fresh environment folder, uv's own cache as a worker would have it.
    cold, cold_verdict = package_run()
    warm = [package_run() for _ in range(5)]

    for model in ("decisions.DecisionAudit", "decisions.Decision"):
        from django.apps import apps

        apps.get_model(model).objects.all().delete()
    WargameRun.objects.all().delete()
    APV.objects.all().delete()
    Patch.objects.all().delete()
    from apps.inventory.models import Dependency, Project

    Dependency.objects.all().delete()
    Project.objects.all().delete()
    call_command("demo", stdout=io.StringIO())
    apv = APV.objects.get(advisory__osv_id="IMMUNE-DEMO-CWE-89")
    patch = Patch.objects.filter(apvs=apv, strategy="code_patch",
                                 title__contains="(effective").get()
    http = []
    for _ in range(3):
        WargameRun.objects.filter(patch=patch).delete()
        started = time.perf_counter()
        run, _ = wargame_start(patch=patch, trigger="benchmark")
        run = wargame_execute(run=run)
        http.append((time.perf_counter() - started, run.verdict))
    shutil.rmtree(envs, ignore_errors=True)
    shutil.rmtree(data, ignore_errors=True)
    print(json.dumps({
        "benchmark": "wargame_timing", "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "package_cold_empty_uv_cache_s": round(coldest, 2),
        "package_cold_empty_uv_cache_verdict": coldest_verdict,
        "package_cold_s": round(cold, 2), "package_cold_verdict": cold_verdict,
        "package_warm_s": {"median": round(statistics.median(t for t, _ in warm), 2),
                           "max": round(max(t for t, _ in warm), 2),
                           "verdicts": sorted({v for _, v in warm})},
        "http_s": {"median": round(statistics.median(t for t, _ in http), 2),
                   "max": round(max(t for t, _ in http), 2),
                   "verdicts": sorted({v for _, v in http})},
    }, indent=2))


if __name__ == "__main__":
    main()
