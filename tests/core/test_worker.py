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
