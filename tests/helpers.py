"""Shared helpers for tests that need a second process or a free port."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Where the real PyPA advisory database lives unless IMMUNE_PYPA_DB says: beside the checkout.
PYPA_DEFAULT = str(ROOT.parent / "shared" / "data" / "pypa-advisory-db" / "vulns")


def pypa_root() -> Path:
    """The real PyPA advisory database; skip (or fail under IMMUNE_REQUIRE_SERVICES) if absent."""
    import pytest

    root = Path(os.environ.get("IMMUNE_PYPA_DB", PYPA_DEFAULT))
    if not root.is_dir():
        message = f"PyPA advisory database not found at {root} (set IMMUNE_PYPA_DB)"
        if os.environ.get("IMMUNE_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return root


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def closed_port() -> int:
    """A loopback port nothing listens on (bound, released, not reused at once)."""
    return free_port()


def run_django(code: str, *, env: dict[str, str] | None = None, timeout: int = 60):
    """Run ``code`` in a fresh interpreter with Django set up under ``env``.

    Settings are read at import, so configurations (production checks, a database
    on a closed port) are tested in their own process, exactly as a server starts.
    """
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    full_env.update(env or {})
    full_env.setdefault("DJANGO_SETTINGS_MODULE", "immune.settings")
    prelude = "import django, json, sys\ndjango.setup()\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + code],
        cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout,
    )


def last_json_line(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise AssertionError(f"no JSON line in output:\n{text}")


def current_database_url() -> str:
    """The test database (``test_<name>``) as a URL another process (a server) can use."""
    from urllib.parse import quote

    from django.db import connection

    db = connection.settings_dict
    credentials = quote(db["USER"] or "", safe="")
    if db["PASSWORD"]:
        credentials += ":" + quote(db["PASSWORD"], safe="")
    return (f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/"
            f"{db['NAME']}")


def processes_with(token: str, *, exploit_only: bool = False) -> list[int]:
    """Processes whose command line holds ``token`` (a sandbox and the PoC it runs);
    ``exploit_only``: the PoC's interpreter itself, not bubblewrap setting it up."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not any(token.encode() in arg for arg in argv):
            continue
        if exploit_only and (Path(argv[0].decode(errors="replace")).name == "bwrap"
                             or not argv[1:2] or token.encode() not in argv[1]):
            continue
        found.append(int(entry.name))
    return found
