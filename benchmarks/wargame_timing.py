"""Benchmark: wall time of a package wargame and an HTTP wargame, cold and warm.

    .venv/bin/python benchmarks/wargame_timing.py

Package: PyYAML 5.3.1 → 5.4 with the built-in PoC. Cold = fresh environment folder (the
environments are built in the build sandbox: uv resolves and downloads through the index
proxy into an empty private cache, as every build does, and builds PyYAML 5.3.1 from
source with Cython<3); warm = the same pair again (environments reused).
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
    envs.chmod(0o755)  # the sandbox user reads environments (else a shared folder is used)
    data = Path(tempfile.mkdtemp(prefix="immune-bench-data-"))
    os.environ["WARGAME_ENV_DIR"] = str(envs)
    os.environ["IMMUNE_DATA_DIR"] = str(data)
    django_on_bench_database(fresh=True)
    from django.core.management import call_command

    from apps.reviews.models import APV, Patch
    from apps.wargaming.models import WargameRun
    from apps.wargaming.sandbox import status as sandbox_status
    from apps.wargaming.services import wargame_execute, wargame_run_package, wargame_start

    def package_run() -> tuple[float, str]:
        started = time.perf_counter()
        run = wargame_run_package(package="pyyaml", vulnerable="5.3.1", fixed="5.4")
        return time.perf_counter() - started, run.verdict

    # Cold: a fresh environment folder. Every build has an empty private uv cache (a build
    # backend must not poison a shared one), so this is also the coldest case.
    cold, cold_verdict = package_run()
    warm = [package_run() for _ in range(5)]

    call_command("demo", stdout=io.StringIO())
    apv = APV.objects.get(advisory__osv_id="IMMUNE-DEMO-CWE-89", project__name="demo")
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
        "package_cold_s": round(cold, 2), "package_cold_verdict": cold_verdict,
        "package_warm_s": {"median": round(statistics.median(t for t, _ in warm), 2),
                           "max": round(max(t for t, _ in warm), 2),
                           "verdicts": sorted({v for _, v in warm})},
        "sandbox": sandbox_status().detail,
        "http_s": {"median": round(statistics.median(t for t, _ in http), 2),
                   "max": round(max(t for t, _ in http), 2),
                   "verdicts": sorted({v for _, v in http})},
    }, indent=2))


if __name__ == "__main__":
    main()
