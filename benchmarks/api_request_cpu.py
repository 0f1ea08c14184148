"""Benchmark: CPU per API request in-process, and where it goes.

    .venv/bin/python benchmarks/api_request_cpu.py [PATH] [--profile]

Runs on the benchmark database (BENCH_DATABASE_URL; fill it first with
``benchmarks/metrics_scrape.py``, 10,000 APVs) under the production settings' middleware,
through Django's test client with a reviewer's token: CPU time (``time.process_time``) per
request for PATH (default ``/api/v1/apvs/``, 50 rows) against ``/health/live``, and with
``--profile`` the functions that take it (cProfile, by own time).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import secrets
import time

os.environ.setdefault("DJANGO_ENV", "production")
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(48))
os.environ.setdefault("ALLOWED_HOSTS", "testserver")
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")

from _setup import django_on_bench_database, machine  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path", nargs="?", default="/api/v1/apvs/")
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    django_on_bench_database()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client
    from rest_framework.authtoken.models import Token

    users = get_user_model()
    if not users.objects.filter(username="bench-reviewer").exists():
        call_command("create_reviewer", "bench-reviewer", stdout=io.StringIO())
    token, _ = Token.objects.get_or_create(user=users.objects.get(username="bench-reviewer"))
    client = Client(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert client.get(args.path).status_code == 200
    client.get("/health/live")

    def cpu_ms(path: str) -> float:
        started = time.process_time()
        for _ in range(args.requests):
            client.get(path)
        return (time.process_time() - started) / args.requests * 1000

    print(f"{machine()}: {args.path} {cpu_ms(args.path):.1f} ms CPU per request, "
          f"/health/live {cpu_ms('/health/live'):.1f} ms")
    if args.profile:
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(args.requests):
            client.get(args.path)
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
