"""Stress: add users step by step until p95 > 1 s or errors > 1 % (``make load STRESS=1``).

Loaded beside the locustfile (``locust -f loadtests/locustfile.py,loadtests/stress_shape.py``)
so that ordinary runs have no shape. Each step holds ``LOAD_STRESS_STEP_S`` seconds (default
20) at ``LOAD_STRESS_START`` + n × ``LOAD_STRESS_STEP`` users (defaults 10 and 10, at most
``LOAD_STRESS_MAX`` = 1000); the step's own requests (a difference of Locust's cumulative
counters, from ``LOAD_STRESS_SETTLE_S`` = 5 s after the step began, once its users are
spawned) give its req/s, p95 and error ratio. The first step over a limit is the breaking
point: every step and the verdict go to ``LOAD_STRESS_RESULT`` (JSON) and the test stops.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from locust import LoadTestShape

P95_LIMIT_MS = float(os.environ.get("LOAD_STRESS_P95_MS", "1000"))
ERROR_LIMIT = float(os.environ.get("LOAD_STRESS_ERRORS", "0.01"))


def _percentile(histogram: dict[int, int], share: float) -> float | None:
    total = sum(histogram.values())
    if not total:
        return None
    rank, seen = share * total, 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= rank:
            return float(value)
    return float(max(histogram))


class StressShape(LoadTestShape):
    start = int(os.environ.get("LOAD_STRESS_START", "10"))
    step = int(os.environ.get("LOAD_STRESS_STEP", "10"))
    step_s = float(os.environ.get("LOAD_STRESS_STEP_S", "20"))
    settle_s = float(os.environ.get("LOAD_STRESS_SETTLE_S", "5"))
    maximum = int(os.environ.get("LOAD_STRESS_MAX", "1000"))

    def __init__(self):
        super().__init__()
        self.steps: list[dict] = []
        self.index = 0
        self.mark: tuple | None = None
        self.done = False

    def _snapshot(self) -> tuple:
        total = self.runner.stats.total
        return (time.monotonic(), total.num_requests, total.num_failures,
                dict(total.response_times))

    def _close_step(self, users: int) -> dict:
        now, requests, failures, times = self._snapshot()
        then, requests0, failures0, times0 = self.mark
        window = {k: v - times0.get(k, 0) for k, v in times.items() if v - times0.get(k, 0)}
        count = requests - requests0
        result = {"users": users, "seconds": round(now - then, 1), "requests": count,
                  "rps": round(count / (now - then), 1) if now > then else 0.0,
                  "p50_ms": _percentile(window, 0.50), "p95_ms": _percentile(window, 0.95),
                  "p99_ms": _percentile(window, 0.99),
                  "errors": failures - failures0,
                  "error_ratio": round((failures - failures0) / count, 4) if count else 0.0}
        result["broken"] = bool(count == 0 or (result["p95_ms"] or 0) > P95_LIMIT_MS
                                or result["error_ratio"] > ERROR_LIMIT)
        return result

    def tick(self):
        if self.done:
            return None
        run_time = self.get_run_time()
        index = int(run_time // self.step_s)
        users = min(self.start + index * self.step, self.maximum)
        in_step = run_time - index * self.step_s
        if index != self.index:
            # the previous step ended: judge it
            previous = min(self.start + self.index * self.step, self.maximum)
            if self.mark is not None:
                result = self._close_step(previous)
                self.steps.append(result)
                print(f"stress step: {json.dumps(result)}", flush=True)
                if result["broken"] or previous >= self.maximum:
                    self._finish(result if result["broken"] else None)
                    return None
            self.index, self.mark = index, None
        if self.mark is None and in_step >= self.settle_s:
            self.mark = self._snapshot()
        return users, max(self.step, 10)

    def _finish(self, broken: dict | None) -> None:
        self.done = True
        good = [s for s in self.steps if not s["broken"]]
        verdict = {
            "limits": {"p95_ms": P95_LIMIT_MS, "error_ratio": ERROR_LIMIT},
            "step_s": self.step_s, "settle_s": self.settle_s,
            "breaking_point": broken,
            "last_good_step": good[-1] if good else None,
            "best_rps": max((s["rps"] for s in self.steps), default=None),
            "steps": self.steps,
        }
        target = os.environ.get("LOAD_STRESS_RESULT")
        if target:
            Path(target).write_text(json.dumps(verdict, indent=2))
