"""Seed a database for the load tests and write the credentials the locustfile reads.

    DJANGO_SETTINGS_MODULE=immune.settings DATABASE_URL=... .venv/bin/python loadtests/seed.py \
        --credentials loadtests/reports/state/immune_load/credentials.json

Run by ``loadtests/run.py`` (``make load``) with the same environment as the server (the
sessions it writes are signed with the server's ``SECRET_KEY``). What it builds:

1. ``manage.py demo --no-wargame``: the bundled advisories, the demo project and its
   patches (62 APVs awaiting review).
2. A generated inventory through the real pipeline: ``--packages`` synthetic OSV advisories
   (one per made-up package, CVSS vectors of every severity) written as OSV JSON and
   imported with ``advisories_import``; then projects ``loadgen-NN``, each a real git
   repository pinning every one of those packages at an affected version, added and
   scanned with ``project_add`` / ``project_scan`` (which raise the APVs, codes, priorities
   and SLAs). Projects are added until ``--apvs`` generated APVs await review, so a
   re-run tops up what the previous run's decision writers used.
3. Each new APV gets an upgrade patch (revision 1, its requirements diff) and moves to
   ``pending_review`` (5 % to ``escalated``, 10 % stay ``open``), as if proposed and
   wargamed; these rows are written in bulk (``bulk_create`` / ``update``), since git
   branches and wargames for thousands of APVs are not what is being measured. Then
   ``ANALYZE``, as autovacuum would do soon after such a load.
4. Accounts with the reviewer role (``apps.core.roles``): console reviewers with a
   password (logged in through the admin login form by Locust), API readers and decision
   writers with a DRF token, and WebSocket listeners with a server-side session.

Prints a JSON summary; idempotent apart from the top-up and fresh sessions.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import secrets
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "loadgen"
VECTORS = [  # (share, CVSS v3.1 vector): critical 9.8, high 7.5, medium 5.3, low 3.1
    (0.15, "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"),
    (0.35, "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N"),
    (0.35, "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:L/I:N/A:N"),
    (0.15, "CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:U/C:L/I:N/A:N"),
]
CWES = ["CWE-79", "CWE-89", "CWE-20", "CWE-22", "CWE-502", "CWE-400", "CWE-918", "CWE-94"]


def package_name(i: int) -> str:
    return f"{PREFIX}-pkg-{i:04d}"


def write_advisories(folder: Path, packages: int) -> Path:
    """One OSV record per package: affected from 0, fixed in 2.0.0."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(12)
    weights = [share for share, _ in VECTORS]
    for i in range(packages):
        vector = rng.choices([v for _, v in VECTORS], weights)[0]
        record = {
            "schema_version": "1.6.0", "id": f"LOADGEN-2026-{i:04d}",
            "modified": "2026-12-01T00:00:00Z", "published": "2026-11-01T00:00:00Z",
            "aliases": [f"CVE-2026-{90000 + i}"],
            "summary": f"Generated flaw {i} in {package_name(i)} ({rng.choice(CWES)})",
            "details": "A generated advisory for the load tests (loadtests/seed.py). "
                       "Versions before 2.0.0 are affected.",
            "severity": [{"type": "CVSS_V3", "score": vector}],
            "affected": [{"package": {"ecosystem": "PyPI", "name": package_name(i)},
                          "ranges": [{"type": "ECOSYSTEM",
                                      "events": [{"introduced": "0"}, {"fixed": "2.0.0"}]}]}],
            "references": [{"type": "WEB", "url": f"https://example.org/loadgen/{i}"}],
            "database_specific": {"cwe_ids": [rng.choice(CWES)]},
        }
        path = folder / f"LOADGEN-2026-{i:04d}.json"
        text = json.dumps(record, indent=1)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
    return folder


def requirements(packages: int, project_index: int) -> str:
    return "".join(f"{package_name(i)}==1.{(i + project_index) % 9}.{i % 5}\n"
                   for i in range(packages))


def git_repo(path: Path, files: dict[str, str]) -> Path:
    if (path / ".git").is_dir():
        return path
    path.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (path / name).write_text(text)
    env = {**os.environ, "GIT_AUTHOR_NAME": "loadgen", "GIT_AUTHOR_EMAIL": "loadgen@localhost",
           "GIT_COMMITTER_NAME": "loadgen", "GIT_COMMITTER_EMAIL": "loadgen@localhost"}
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", "pins"]):
        subprocess.run(["git", "-C", str(path), *args], check=True, env=env,
                       capture_output=True)
    return path


def pending_generated() -> int:
    from apps.reviews.models import APV, APVStatus

    return APV.objects.filter(project__name__startswith=f"{PREFIX}-",
                              status=APVStatus.PENDING_REVIEW).count()


def add_project(index: int, packages: int, data: Path) -> dict:
    """A new scanned project; its open APVs get a patch and go to review."""
    from django.db import connection, transaction
    from django.utils import timezone

    from apps.inventory.services import project_add, project_scan
    from apps.reviews.models import APV, APVStatus, Patch, PatchStrategy, RiskLevel

    name = f"{PREFIX}-{index:02d}"
    repo = git_repo(data / "repos" / name, {"requirements.txt": requirements(packages, index)})
    project = project_add(name=name, path=str(repo),
                          description="Generated for the load tests (loadtests/seed.py)")
    scan = project_scan(project=project)
    apvs = list(APV.objects.filter(project=project, status=APVStatus.OPEN)
                .select_related("dependency").order_by("code"))
    rng = random.Random(index)
    now = timezone.now()
    with transaction.atomic():
        patches = Patch.objects.bulk_create([
            Patch(project=project, strategy=PatchStrategy.DEPENDENCY_UPGRADE, revision=1,
                  ecosystem="PyPI", package=apv.dependency.normalised_name,
                  from_version=apv.dependency.version, target_version="2.0.0",
                  risk_level=RiskLevel.LOW if apv.dependency.version.startswith("1.")
                  else RiskLevel.MEDIUM,
                  title=f"Upgrade {apv.dependency.name} {apv.dependency.version} → 2.0.0",
                  notes=["Generated for the load tests."],
                  diff=(f"--- a/requirements.txt\n+++ b/requirements.txt\n"
                        f"@@ -{apv.dependency.line},1 +{apv.dependency.line},1 @@\n"
                        f"-{apv.dependency.name}=={apv.dependency.version}\n"
                        f"+{apv.dependency.name}==2.0.0\n"))
            for apv in apvs], batch_size=1000)
        Patch.apvs.through.objects.bulk_create([
            Patch.apvs.through(patch_id=patch.pk, apv_id=apv.pk)
            for patch, apv in zip(patches, apvs, strict=True)], batch_size=1000)
        moved = {APVStatus.PENDING_REVIEW: [], APVStatus.ESCALATED: [], APVStatus.OPEN: []}
        for apv in apvs:
            roll = rng.random()
            status = (APVStatus.OPEN if roll < 0.10 else APVStatus.ESCALATED if roll < 0.15
                      else APVStatus.PENDING_REVIEW)
            moved[status].append(apv.pk)
        for status, pks in moved.items():
            if status == APVStatus.OPEN or not pks:
                continue
            APV.objects.filter(pk__in=pks).update(status=status, pending_review_at=now,
                                                  updated_at=now)
        # Each APV's current patch is the one its M2M row ties it to: one UPDATE ... FROM.
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE reviews_apv SET current_patch_id = t.patch_id "
                "FROM reviews_patch_apvs t WHERE t.apv_id = reviews_apv.id "
                "AND reviews_apv.project_id = %s", [project.pk])
    return {"project": name, "dependencies": scan.dependencies, "apvs": len(apvs)}


def accounts(prefix: str, count: int, *, password_hash: str | None = None,
             tokens: bool = False) -> list:
    """``count`` users with the reviewer role (created once, reused afterwards)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from rest_framework.authtoken.models import Token

    from apps.core.roles import REVIEWERS, roles_sync

    User = get_user_model()
    roles_sync()
    group = Group.objects.get(name=REVIEWERS)
    names = [f"{prefix}-{i:03d}" for i in range(count)]
    existing = set(User.objects.filter(username__in=names).values_list("username", flat=True))
    User.objects.bulk_create([User(username=n, is_staff=True, password=password_hash or "!")
                              for n in names if n not in existing])
    users = list(User.objects.filter(username__in=names).order_by("username"))
    if password_hash:
        User.objects.filter(username__in=names).update(password=password_hash)
    group.user_set.add(*users)
    if tokens:
        have = set(Token.objects.filter(user__in=users).values_list("user_id", flat=True))
        Token.objects.bulk_create([Token(user=u, key=Token.generate_key())
                                   for u in users if u.pk not in have])
    return users


def session_cookie(user) -> str:
    """A logged-in session, as ``django.contrib.auth.login`` makes it."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    store = SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0] \
        if getattr(settings, "AUTHENTICATION_BACKENDS", None) \
        else "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.create()
    return store.session_key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--credentials", required=True, type=Path)
    parser.add_argument("--apvs", type=int, default=5000,
                        help="generated APVs awaiting review to have (topped up per run)")
    parser.add_argument("--packages", type=int, default=600,
                        help="generated advisories/packages (= APVs per project)")
    parser.add_argument("--reviewers", type=int, default=40, help="console accounts")
    parser.add_argument("--api-users", type=int, default=200, help="API reader accounts")
    parser.add_argument("--writers", type=int, default=100, help="decision writer accounts")
    parser.add_argument("--ws-sessions", type=int, default=50,
                        help="sessions for WebSocket listeners")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "immune.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth.hashers import make_password
    from django.core.management import call_command

    from apps.advisories.services import advisories_import
    from apps.reviews.models import APV, APVStatus

    started = time.monotonic()
    summary: dict = {}
    call_command("demo", "--no-wargame", stdout=io.StringIO())
    summary["demo_s"] = round(time.monotonic() - started, 1)
    data = Path(settings.IMMUNE_DATA_DIR)
    report = advisories_import(sources=[str(write_advisories(data / "loadgen-advisories",
                                                             args.packages))],
                               source_name=PREFIX)
    summary["advisories"] = {"created": report.created, "unchanged": report.unchanged}
    from apps.inventory.models import Project

    projects = []
    index = Project.objects.filter(name__startswith=f"{PREFIX}-").count()
    while pending_generated() < args.apvs:
        projects.append(add_project(index, args.packages, data))
        index += 1
    summary["projects_added"] = projects
    summary["apvs"] = {"total": APV.objects.count(),
                       "generated": APV.objects.filter(
                           project__name__startswith=f"{PREFIX}-").count(),
                       "pending_review": APV.objects.filter(
                           status=APVStatus.PENDING_REVIEW).count()}

    # Fresh planner statistics, as autovacuum would soon gather them: right after bulk
    # loading, PostgreSQL still estimates a few dozen APVs and joins every row before
    # sorting instead of walking the queue index (47 ms against 1 ms for a page of 50).
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    password = secrets.token_urlsafe(18)
    reviewers = accounts("load-reviewer", args.reviewers, password_hash=make_password(password))
    readers = accounts("load-api", args.api_users, tokens=True)
    writers = accounts("load-writer", args.writers, tokens=True)
    listeners = accounts("load-ws", args.ws_sessions)
    from rest_framework.authtoken.models import Token

    token_of = dict(Token.objects.filter(user__in=readers + writers)
                    .values_list("user_id", "key"))
    pending = list(APV.objects.filter(status=APVStatus.PENDING_REVIEW,
                                      project__name__startswith=f"{PREFIX}-")
                   .select_related("current_patch").order_by("?")
                   .values_list("code", "current_patch__revision"))
    sample = list(APV.objects.filter(project__name__startswith=f"{PREFIX}-")
                  .order_by("?").values_list("pk", "code")[:2000])
    credentials = {
        "reviewers": [{"username": u.username, "password": password} for u in reviewers],
        "api_tokens": [token_of[u.pk] for u in readers],
        "writer_tokens": [token_of[u.pk] for u in writers],
        "writer_usernames": [u.username for u in writers],
        "ws_sessions": [session_cookie(u) for u in listeners],
        "session_cookie_name": settings.SESSION_COOKIE_NAME,
        "csrf_cookie_name": settings.CSRF_COOKIE_NAME,
        # the writers' targets: pending APVs (code, patch revision), in random order
        "decision_targets": pending,
        # what readers and reviewers open: (pk, code) of generated APVs
        "apv_sample": sample,
        "projects": sorted(Project.objects.values_list("name", flat=True)),
    }
    args.credentials.parent.mkdir(parents=True, exist_ok=True)
    args.credentials.write_text(json.dumps(credentials))
    args.credentials.chmod(0o600)
    summary["decision_targets"] = len(pending)
    summary["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
