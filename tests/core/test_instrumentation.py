"""Every task goes through instrumented_task: metrics by task name, log context."""

import pytest
from prometheus_client import REGISTRY

from apps.core.instrumentation import instrumented_task


def sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


@instrumented_task(name="tests.explode")
def explode(reason: str) -> None:
    raise ValueError(reason)


@instrumented_task(name="tests.add", bind=True)
def add(self, a: int, b: int) -> int:
    return a + b


def test_failing_task_is_counted_as_a_failure():
    before_fail = sample("immune_celery_task_failures_total", task="tests.explode")
    before_runs = sample("immune_celery_task_runs_total", task="tests.explode", outcome="failure")
    with pytest.raises(ValueError, match="boom"):
        explode.delay("boom")
    assert sample("immune_celery_task_failures_total", task="tests.explode") == before_fail + 1
    assert sample(
        "immune_celery_task_runs_total", task="tests.explode", outcome="failure"
    ) == before_runs + 1
    assert sample("immune_celery_task_duration_seconds_count", task="tests.explode") >= 1


def test_successful_task_is_counted_and_timed():
    before = sample("immune_celery_task_runs_total", task="tests.add", outcome="success")
    assert add.delay(2, 3).get() == 5
    after = sample("immune_celery_task_runs_total", task="tests.add", outcome="success")
    assert after == before + 1
    assert sample("immune_celery_task_failures_total", task="tests.add") == 0


def test_task_log_lines_carry_the_task_name(capsys):
    import logging

    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Keep()
    logging.getLogger().addHandler(handler)
    try:
        add.delay(1, 1)
    finally:
        logging.getLogger().removeHandler(handler)
    succeeded = [r.msg for r in records if isinstance(r.msg, dict)
                 and r.msg.get("event") == "task.succeeded"]
    assert succeeded and succeeded[-1]["task"] == "tests.add"
    assert succeeded[-1]["task_id"]


@instrumented_task(name="tests.log_inside")
def log_inside() -> str:
    import structlog

    structlog.get_logger("tests.inside").info("tests.inside_the_task")
    return "done"


def test_every_log_line_of_a_task_without_bind_carries_its_id():
    import logging

    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Keep()
    logging.getLogger().addHandler(handler)
    try:
        result = log_inside.delay()
    finally:
        logging.getLogger().removeHandler(handler)
    lines = [r.msg for r in records if isinstance(r.msg, dict)
             and r.msg.get("event") in ("tests.inside_the_task", "task.succeeded")]
    assert {line["event"] for line in lines} == {"tests.inside_the_task", "task.succeeded"}
    assert {line["task_id"] for line in lines} == {result.id}
