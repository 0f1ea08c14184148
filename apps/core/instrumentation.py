"""``instrumented_task``: the one decorator every Celery task goes through.

It records Prometheus metrics by task name (runs, failures, duration) and binds
the task's name and id into the log context, the way Sentry's
``instrumented_task`` does. Tasks stay thin: take ids, call a service.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import structlog
from celery import current_task, shared_task
from prometheus_client import Counter, Histogram

log = structlog.get_logger(__name__)

TASK_RUNS = Counter(
    "immune_celery_task_runs_total", "Celery task executions, by task and outcome.",
    ["task", "outcome"],
)
TASK_FAILURES = Counter(
    "immune_celery_task_failures_total", "Celery task executions that raised.", ["task"]
)
TASK_DURATION = Histogram(
    "immune_celery_task_duration_seconds", "Wall time of Celery task executions.", ["task"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
)


def instrumented_task(*, name: str, **celery_options: Any) -> Callable:
    """Register ``func`` as a Celery task called ``name`` with metrics and log context."""

    def decorator(func: Callable) -> Any:
        @functools.wraps(func)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            # The id of the execution running now, bound or not (issue 16: it was null in
            # every line of a task without bind=True).
            task_id = getattr(getattr(current_task, "request", None), "id", None)
            if task_id is None and celery_options.get("bind") and args:
                task_id = getattr(args[0].request, "id", None)
            started = time.perf_counter()
            with structlog.contextvars.bound_contextvars(task=name, task_id=task_id):
                try:
                    result = func(*args, **kwargs)
                except Exception:
                    TASK_RUNS.labels(task=name, outcome="failure").inc()
                    TASK_FAILURES.labels(task=name).inc()
                    log.exception("task.failed", duration_s=time.perf_counter() - started)
                    raise
                finally:
                    TASK_DURATION.labels(task=name).observe(time.perf_counter() - started)
                TASK_RUNS.labels(task=name, outcome="success").inc()
                log.info("task.succeeded", duration_s=round(time.perf_counter() - started, 4))
                return result

        return shared_task(name=name, **celery_options)(wrapped)

    return decorator
