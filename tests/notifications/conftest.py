"""A scanned project with real APVs and patches, a real SMTP server (aiosmtpd) and real
HTTP receivers on loopback, for the notification tests."""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone

from tests.factories import DEMO_ADVISORIES, make_repo

PACKAGES = {"pyyaml": "PyYAML==5.3.1", "jinja2": "Jinja2==2.10", "urllib3": "urllib3==1.24.1"}


@dataclass
class Pipeline:
    project: object
    apvs: dict  # APV code → APV

    def apv(self, package: str, severity: str | None = None):
        from apps.reviews.models import APV

        qs = APV.objects.filter(project=self.project, dependency__normalised_name=package)
        if severity:
            qs = qs.filter(severity=severity)
        return qs.select_related("current_patch").order_by("code").first()


def build_pipeline(tmp_path, name: str = "svc") -> Pipeline:
    """Advisories imported, a real git repository scanned and patches proposed, all
    through the services: 10 APVs (PyYAML 1, Jinja2 2, urllib3 7), pending review."""
    from apps.advisories.services import advisories_import
    from apps.inventory.services import project_add, project_scan
    from apps.reviews.models import APV
    from apps.reviews.services.patches import patches_propose

    advisories_import(sources=[str(DEMO_ADVISORIES / p) for p in PACKAGES])
    repo = make_repo(tmp_path / name, {"requirements.txt": "\n".join(PACKAGES.values()) + "\n"})
    project = project_scan(project=project_add(name=name, path=str(repo))).project
    patches_propose(project=project)
    return Pipeline(project, {a.code: a for a in APV.objects.filter(project=project)})


@pytest.fixture
def pipeline(db, tmp_path):
    return build_pipeline(tmp_path)


SANDBOX_OK = {"available": True, "confined": True, "detail": "bubblewrap 0.11",
              "cgroup": "2", "host": "worker-1"}


def set_sandbox(report: dict) -> None:
    """What a worker publishes about its sandbox (apps/wargaming/health.py)."""
    from django.core.cache import cache

    from apps.wargaming.health import STATUS_CACHE_KEY

    cache.set(STATUS_CACHE_KEY, {**report, "at": time.time()}, timeout=None)


@pytest.fixture(autouse=True)
def _notify_settings(settings):
    """The sandbox as a worker reports it (not this test machine's own), no operator
    webhooks unless a test configures some."""
    settings.CELERY_TASK_ALWAYS_EAGER = False  # health reads the workers' report
    settings.NOTIFY_WEBHOOK_URLS = []
    settings.NOTIFY_WEBHOOK_EVENTS = ["all"]
    settings.NOTIFY_BASE_URL = "https://immune.example.org"
    set_sandbox(SANDBOX_OK)


def detect(django_capture_on_commit_callbacks):
    """One detection pass, with the sends it enqueues run (eagerly) after commit."""
    from apps.notifications.services import notifications_detect

    with django_capture_on_commit_callbacks(execute=True):
        return notifications_detect()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- A real SMTP server ----------------------------------------------------------------------

class _Collect:
    def __init__(self):
        self.envelopes = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server(settings):
    from aiosmtpd.controller import Controller

    handler = _Collect()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", controller.port
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.NOTIFY_EMAIL_FROM = "immune@example.org"
    yield handler
    controller.stop()


# --- Real HTTP receivers ---------------------------------------------------------------------

@dataclass
class Receiver:
    server: ThreadingHTTPServer
    #: Statuses to answer, in order; once used up, 200.
    statuses: list = field(default_factory=list)
    requests: list = field(default_factory=list)
    headers: dict = field(default_factory=dict)

    def url(self, path: str = "/hook") -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}{path}"

    @property
    def bodies(self) -> list[dict]:
        return [json.loads(r["body"]) for r in self.requests]


def _handler(receiver: Receiver):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            receiver.requests.append({"path": self.path, "headers": dict(self.headers),
                                      "body": body})
            status = receiver.statuses.pop(0) if receiver.statuses else 200
            self.send_response(status)
            for name, value in receiver.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        do_GET = do_POST  # noqa: N815 (a followed redirect would arrive as GET)

        def log_message(self, *args):
            pass

    return Handler


@pytest.fixture
def receivers():
    """``make(statuses=[...])`` starts a receiver on a free loopback port."""
    started: list[Receiver] = []

    def make(statuses=(), headers=None) -> Receiver:
        receiver = Receiver(server=None, statuses=list(statuses), headers=headers or {})
        receiver.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
        threading.Thread(target=receiver.server.serve_forever, daemon=True).start()
        started.append(receiver)
        return receiver

    yield make
    for receiver in started:
        receiver.server.shutdown()
        receiver.server.server_close()


def age_sla(apv, *, used: float, window_days: int = 90) -> None:
    """Move an APV's SLA window so that ``used`` of it has passed (1.0: due now)."""
    from apps.reviews.models import APV

    now = timezone.now()
    first = now - timedelta(days=window_days * used)
    APV.objects.filter(pk=apv.pk).update(first_seen_at=first,
                                         sla_due_at=first + timedelta(days=window_days))
