"""``/metrics`` of a Celery worker (issue 15): the task metrics where Prometheus can read them.

A worker serves no HTTP, so its main process starts a small threaded HTTP server on
``WORKER_METRICS_PORT`` (9808 in the deployment files; 0 turns it off) when Celery calls
``worker_init``. Like the web's ``/metrics`` it needs ``Authorization: Bearer
$METRICS_TOKEN``; without a token configured it does not start (logged), since an open
port is not what "authentication on everything but health" means.

Prefork children record in their own memory, so the pod must set
``PROMETHEUS_MULTIPROC_DIR`` (an empty directory of its own) for the main process to see
their counts; the directory is emptied when the worker starts and each child's live
gauges are dropped when it exits.
"""

from __future__ import annotations

import hmac
import threading
from pathlib import Path
from wsgiref.simple_server import make_server

import structlog
from django.conf import settings
from prometheus_client import make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer, _SilentHandler

from apps.core.metrics import exposition_registry, multiprocess_dir

log = structlog.get_logger(__name__)


def _guarded(app, token: str):
    expected = f"Bearer {token}".encode()

    def guarded(environ, start_response):
        supplied = environ.get("HTTP_AUTHORIZATION", "").encode()
        if not hmac.compare_digest(supplied, expected):
            start_response("401 Unauthorized", [("Content-Type", "text/plain")])
            return [b"Metrics need Authorization: Bearer <METRICS_TOKEN>.\n"]
        return app(environ, start_response)

    return guarded


def serve(port: int, addr: str = "0.0.0.0"):  # noqa: S104 (a pod's port, by design)
    """Start the server in a daemon thread; returns it (``shutdown()`` to stop)."""
    token = settings.METRICS_TOKEN
    if not token:
        log.warning("worker_metrics.off", reason="METRICS_TOKEN is not set")
        return None
    directory = multiprocess_dir()
    if directory:
        for stale in Path(directory).glob("*.db"):  # counts of a previous run of this pod
            stale.unlink(missing_ok=True)
    server = make_server(addr, port, _guarded(make_wsgi_app(exposition_registry()), token),
                         ThreadingWSGIServer, handler_class=_SilentHandler)
    threading.Thread(target=server.serve_forever, name="worker-metrics", daemon=True).start()
    log.info("worker_metrics.serving", port=server.server_port, multiprocess=bool(directory))
    return server


def on_worker_init(**_kwargs) -> None:
    if settings.WORKER_METRICS_PORT:
        serve(settings.WORKER_METRICS_PORT, settings.WORKER_METRICS_ADDR)


def on_child_exit(pid: int | None = None, **_kwargs) -> None:
    if multiprocess_dir() and pid:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
