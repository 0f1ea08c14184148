"""A real Celery worker takes a task from the Redis broker and returns its result."""

import subprocess
import sys
import uuid

import pytest

from tests.helpers import ROOT


@pytest.mark.redis
def test_task_round_trip_through_a_real_worker():
    from apps.core.tasks import ping
    from immune.celery import app

    queue = f"immune-test-{uuid.uuid4().hex[:8]}"
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "immune", "worker", "--pool", "solo",
         "-Q", queue, "--without-heartbeat", "--without-gossip", "--without-mingle",
         "-l", "warning"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    previous = app.conf.task_always_eager
    app.conf.task_always_eager = False
    try:
        result = ping.apply_async(queue=queue)
        assert result.get(timeout=60) == "pong"
        assert result.status == "SUCCESS"
    finally:
        app.conf.task_always_eager = previous
        worker.terminate()
        output = worker.communicate(timeout=30)[0]
    assert "Traceback" not in output, output


@pytest.mark.redis
def test_a_prefork_worker_serves_the_task_metrics_of_all_its_children(tmp_path):
    """Task metrics recorded in prefork children are scrapeable from the worker's port,
    merged across children (multiprocess mode), and only with the metrics token."""
    import os
    import time
    import urllib.error
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    from apps.core.tasks import ping
    from immune.celery import app
    from tests.helpers import free_port

    queue = f"immune-test-{uuid.uuid4().hex[:8]}"
    port, token = free_port(), uuid.uuid4().hex
    metrics_dir = tmp_path / "prom"
    metrics_dir.mkdir()
    (metrics_dir / "counter_1.db").write_bytes(b"stale")  # a previous run's: removed at start
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(PROMETHEUS_MULTIPROC_DIR=str(metrics_dir), WORKER_METRICS_PORT=str(port),
               WORKER_METRICS_ADDR="127.0.0.1", METRICS_TOKEN=token)
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "immune", "worker", "--pool", "prefork",
         "--concurrency", "2", "-Q", queue, "--without-heartbeat", "--without-gossip",
         "--without-mingle", "-l", "warning"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    previous = app.conf.task_always_eager
    app.conf.task_always_eager = False
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        results = [ping.apply_async(queue=queue) for _ in range(6)]
        assert [r.get(timeout=60) for r in results] == ["pong"] * 6
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=5)  # noqa: S310 (loopback)
        assert refused.value.code == 401
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        runs = None
        for _ in range(20):  # the children's files are flushed as they record
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
                text = response.read().decode()
            runs = {tuple(sorted(s.labels.items())): s.value
                    for family in text_string_to_metric_families(text)
                    if family.name == "immune_celery_task_runs"
                    for s in family.samples if s.name.endswith("_total")}
            if runs.get((("outcome", "success"), ("task", "core.ping"))) == 6:
                break
            time.sleep(0.25)
        assert runs.get((("outcome", "success"), ("task", "core.ping"))) == 6, runs
    finally:
        app.conf.task_always_eager = previous
        worker.terminate()
        output = worker.communicate(timeout=30)[0]
    assert "Traceback" not in output, output
