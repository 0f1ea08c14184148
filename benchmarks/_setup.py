"""Shared set-up for benchmarks: a dedicated PostgreSQL database, migrated and empty."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/immune_bench"


def django_on_bench_database(*, fresh: bool = False) -> str:
    """Point Django at the benchmark database (created if missing; dropped and created again
    with ``fresh``), migrate, return its URL."""
    url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "immune.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    sys.path.insert(0, str(ROOT))
    import psycopg

    name = url.rsplit("/", 1)[1]
    admin_url = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if fresh:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return url


def machine() -> str:
    cpus = os.cpu_count()
    mem = ""
    try:
        meminfo = Path("/proc/meminfo").read_text().splitlines()
        kb = int(next(line for line in meminfo if line.startswith("MemTotal")).split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    return f"{platform.machine()}, {cpus} CPUs{mem}, Python {platform.python_version()}"


@contextmanager
def git_repo_with(files: dict[str, str]):
    """A throwaway git repository with ``files`` committed on main (removed afterwards)."""
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        for name, text in files.items():
            (repo / name).write_text(text)
        for cmd in (["init", "-q", "-b", "main"], ["add", "."],
                    ["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-q", "-m", "x"]):
            subprocess.run(["git", "-C", str(repo), *cmd], check=True)
        yield repo


def pypa_root() -> Path:
    root = Path(os.environ.get("IMMUNE_PYPA_DB", "")
                or Path(__file__).resolve().parents[2] / "shared" / "data" / "pypa-advisory-db"
                / "vulns")
    if not root.is_dir():
        sys.exit(f"PyPA advisory database not found at {root}; set IMMUNE_PYPA_DB")
    return root
