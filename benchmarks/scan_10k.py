"""Benchmark: scan 10,000 pinned dependencies against the whole PyPA advisory set.

    .venv/bin/python benchmarks/scan_10k.py [--runs 3]

The project is a real git repository whose requirements.txt pins 10,000 packages: every
package named in the PyPA data (at an old, mostly affected version and at a recent one)
plus made-up names, so most look-ups find nothing, as in a real inventory. Reports the
matching step alone (index + OSV evaluation, the issue's aim: < 2 s) and the whole
``project_scan`` (git export, parsing, dependency and APV writes).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import UTC, datetime

from _setup import django_on_bench_database, git_repo_with, machine, pypa_root

TOTAL = 10_000


def requirements(names: list[str]) -> str:
    lines = []
    for i, name in enumerate(names):
        lines.append(f"{name}=={'0.1' if i % 2 else '1.0.0'}")
        lines.append(f"{name}-extra-{i}==2.{i % 7}.{i % 13}")
    lines += [f"synthetic-package-{i}==1.{i % 10}.{i % 5}" for i in range(TOTAL - len(lines))]
    return "\n".join(lines[:TOTAL]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    django_on_bench_database()
    from apps.advisories.models import Advisory, AffectedPackage
    from apps.advisories.services import advisories_import
    from apps.inventory.models import Dependency, Project
    from apps.inventory.services import exposures_for, project_add, project_scan
    from apps.reviews.models import APV

    if not Advisory.objects.exists():
        advisories_import(sources=[str(pypa_root())], source_name="pypa")
    names = sorted(set(AffectedPackage.objects.values_list("normalised_name", flat=True)))
    with git_repo_with({"requirements.txt": requirements(names)}) as repo:
        scans, matches = [], []
        for _ in range(args.runs):
            APV.objects.all().delete()
            Dependency.objects.all().delete()
            Project.objects.all().delete()
            project = project_add(name="bench", path=str(repo))
            started = time.perf_counter()
            result = project_scan(project=project)
            scans.append(time.perf_counter() - started)
            deps = list(Dependency.objects.filter(project=project))
            started = time.perf_counter()
            exposures = exposures_for(deps)
            matches.append(time.perf_counter() - started)
        assert result.pinned == TOTAL, result.pinned
    print(json.dumps({
        "benchmark": "scan_10k", "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(), "runs": args.runs, "dependencies": TOTAL,
        "advisories": Advisory.objects.count(), "apvs": len(exposures),
        "matching_s": {"median": round(statistics.median(matches), 3),
                       "max": round(max(matches), 3)},
        "full_scan_s": {"median": round(statistics.median(scans), 2),
                        "max": round(max(scans), 2)},
    }, indent=2))


if __name__ == "__main__":
    main()
