"""Concurrent decisions against a real server process (issue 13).

- One Idempotency-Key on 8 concurrent requests: one decides, the other 7 wait for it and
  replay its response (201, the same body, ``Idempotent-Replayed: true``); the key with
  another body or another APV is 422. Keys are per reviewer. On PostgreSQL (an advisory
  lock on the key) and on SQLite.
- On SQLite, the embedded default, concurrent decisions serialise: no 5xx ("database is
  locked"), one decision per APV, one merge.

Requests are real HTTP requests from threads released together by a barrier, to uvicorn
running the project; the server runs in its own process on the database under test.
"""

from __future__ import annotations

import io
import os
import threading
import time
from pathlib import Path

import pytest
from django.core.management import call_command

from tests.factories import git
from tests.faults import request, uvicorn
from tests.helpers import current_database_url, last_json_line, run_django

JUSTIFICATION = "Upgrade verified against the changelog."


def burst(calls: list) -> list:
    """Run the calls at once from one thread each; their results, in order."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        results[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def decide(base: str, token: str, apv: dict, decision: str = "approve", *,
           key: str | None = None, justification: str = JUSTIFICATION):
    """POST a decision; (status, headers, body)."""
    body = {"decision": decision, "justification": justification,
            "patch_revision": apv["revision"]}
    return request(f"{base}/api/v1/apvs/{apv['code']}/decisions/", method="POST",
                   token=token, body=body, headers={"Idempotency-Key": key} if key else {},
                   timeout=60)


def merges_on_main(repo: str) -> int:
    return len(git(repo, "log", "--merges", "--format=%H", "main").split())


#: What step two of a decision changes after step one (docs/patches-and-decisions.md, "Two
#: steps"): a replay shows the decision as it is when replayed, so a replay that ran while
#: the first request's action was still running may say ``applying``.
OUTCOME_FIELDS = {"outcome", "action_taken", "action_error", "status_after", "applied_at",
                  "apply_attempts"}


def assert_one_decided_seven_replayed(responses) -> dict:
    """One request decided, seven replayed the same decision; the first request's body."""
    statuses = [status for status, _, _ in responses]
    assert statuses == [201] * 8, [(s, b) for s, _, b in responses]
    replayed = [headers.get("Idempotent-Replayed") for _, headers, _ in responses]
    assert replayed.count("true") == 7, replayed
    assert replayed.count(None) == 1, replayed
    first = next(body for _, headers, body in responses
                 if headers.get("Idempotent-Replayed") is None)
    bodies = [body for _, _, body in responses]

    def steady(body: dict) -> dict:
        return {k: v for k, v in body.items() if k not in OUTCOME_FIELDS}

    assert all(steady(body) == steady(first) for body in bodies), bodies  # one decision
    assert all(body == first for body in bodies if body["outcome"] != "applying"), bodies
    return first


# --- PostgreSQL ---------------------------------------------------------------------------

def server_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    # Step two of a decision runs in the server process (as on the embedded profile): this
    # test is about deciding once; a worker applying a decision is test_two_steps's.
    env.update(DATABASE_URL=current_database_url(), IMMUNE_DATA_DIR=str(data_dir),
               DJANGO_SETTINGS_MODULE="immune.settings", LOG_LEVEL="WARNING",
               CELERY_TASK_ALWAYS_EAGER="true")
    return env


def apv_dict(apv) -> dict:
    return {"code": apv.code, "revision": apv.current_patch.revision}


@pytest.mark.postgres  # the server process must see the test database
@pytest.mark.django_db(transaction=True)
def test_one_key_on_eight_concurrent_requests_decides_once_on_postgresql(
        tmp_path, settings, reviewer, lead):
    from rest_framework.authtoken.models import Token

    from apps.decisions.models import Decision
    from apps.inventory.models import Project
    from tests.decisions.conftest import apv_of

    settings.IMMUNE_DATA_DIR = tmp_path
    call_command("demo", "--no-wargame", stdout=io.StringIO())
    repo = Project.objects.get(name="demo").path
    pyyaml, jinja = apv_dict(apv_of("pyyaml")), apv_dict(apv_of("jinja2"))
    rita = Token.objects.create(user=reviewer).key
    leo = Token.objects.create(user=lead).key

    with uvicorn(server_env(tmp_path), tmp_path / "server.log") as base:
        first = assert_one_decided_seven_replayed(
            burst([lambda: decide(base, rita, pyyaml, key="retry-1")] * 8))
        assert first["action_taken"] == "merged" and first["status_after"] == "applied"
        assert Decision.objects.filter(apv__code=pyyaml["code"]).count() == 1
        assert merges_on_main(repo) == 1

        # The key again with another body, or for another APV: refused, nothing written.
        status, _, body = decide(base, rita, pyyaml, key="retry-1",
                                 justification="A different justification text.")
        assert status == 422, body
        assert body["error"]["code"] == "idempotency_key_reused"
        assert body["error"]["details"]["decision_id"] == first["id"]
        status, _, body = decide(base, rita, jinja, "reject", key="retry-1")
        assert (status, body["error"]["code"]) == (422, "idempotency_key_reused")
        assert Decision.objects.count() == 1

        # Keys are per reviewer: another reviewer's "retry-1" is a new decision.
        status, headers, body = decide(base, leo, jinja, "reject", key="retry-1")
        assert status == 201, body
        assert "Idempotent-Replayed" not in headers
        assert body["reviewer"] == "leo" and body["action_taken"] == "branch_deleted"
        # ... and a plain retry of the first request is still its replay.
        status, headers, body = decide(base, rita, pyyaml, key="retry-1")
        assert (status, headers["Idempotent-Replayed"], body) == (201, "true", first)
    assert Decision.objects.count() == 2
    assert "Traceback" not in (tmp_path / "server.log").read_text()


# --- SQLite (the embedded default) ----------------------------------------------------------

SEED = """
from django.core.management import call_command
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from apps.reviews.models import APV
call_command('migrate', verbosity=0)
call_command('demo', '--no-wargame', stdout=sys.stderr)
call_command('create_reviewer', 'rita', stdout=sys.stderr)
user = get_user_model().objects.get(username='rita')
apvs = {}
for apv in (APV.objects.filter(status='pending_review', current_patch__branch__gt='')
            .select_related('current_patch', 'dependency', 'project').order_by('code')):
    apvs.setdefault(apv.dependency.normalised_name, {
        'code': apv.code, 'revision': apv.current_patch.revision,
        'strategy': apv.current_patch.strategy, 'repo': apv.project.path})
print(json.dumps({'token': Token.objects.create(user=user).key, 'apvs': apvs}))
"""

COUNTS = """
from django.db.models import Count
from apps.decisions.models import Decision
print(json.dumps(dict(Decision.objects.values_list('apv__code').annotate(n=Count('id'))
                      .order_by())))
"""


def sqlite_env(data_dir: Path) -> dict[str, str]:
    """The embedded default: no DATABASE_URL, no Redis, tasks in-process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(DATABASE_URL="", REDIS_URL="", CELERY_BROKER_URL="", CELERY_RESULT_BACKEND="",
               CELERY_TASK_ALWAYS_EAGER="", IMMUNE_DATA_DIR=str(data_dir),
               DJANGO_SETTINGS_MODULE="immune.settings", LOG_LEVEL="WARNING")
    return env


@pytest.fixture(scope="module")
def sqlite_server(tmp_path_factory):
    """The demo on SQLite in a data folder of its own, served by uvicorn with two worker
    processes (each with its request threads); yields (base URL, token, APVs by package,
    data folder)."""
    data_dir = tmp_path_factory.mktemp("sqlite")
    env = sqlite_env(data_dir)
    seeded = run_django(SEED, env=env, timeout=240)
    assert seeded.returncode == 0, seeded.stderr[-3000:]
    seed = last_json_line(seeded.stdout)
    log_path = data_dir / "server.log"
    with uvicorn(env, log_path, workers=2) as base:
        yield base, seed["token"], seed["apvs"], data_dir
    assert "database is locked" not in log_path.read_text()
    assert "Traceback" not in log_path.read_text()


def decision_counts(data_dir: Path) -> dict[str, int]:
    counted = run_django(COUNTS, env=sqlite_env(data_dir))
    assert counted.returncode == 0, counted.stderr[-3000:]
    return last_json_line(counted.stdout)


def test_sqlite_concurrent_decisions_serialise_without_5xx(sqlite_server):
    base, token, apvs, data_dir = sqlite_server
    rejected = [apvs[p] for p in ("jinja2", "urllib3", "django", "requests", "werkzeug",
                                  "pyjwt")]
    # Six decisions on six APVs at once, each deleting its branch in the same repository.
    responses = burst([lambda apv=apv: decide(base, token, apv, "reject") for apv in rejected])
    assert [status for status, _, _ in responses] == [201] * 6, responses
    assert {body["action_taken"] for _, _, body in responses} == {"branch_deleted"}

    # Six reviewers' clicks on one APV at once (no key): one decision and one merge.
    pyyaml = apvs["pyyaml"]
    repo = pyyaml["repo"]
    responses = burst([lambda: decide(base, token, pyyaml)] * 6)
    statuses = sorted(status for status, _, _ in responses)
    assert statuses == [201] + [409] * 5, responses
    assert {body["error"]["code"] for status, _, body in responses if status == 409} == {
        "decision_conflict"}
    assert merges_on_main(repo) == 1

    counts = decision_counts(data_dir)
    assert counts == {apv["code"]: 1 for apv in [*rejected, pyyaml]}


def test_sqlite_one_key_on_eight_concurrent_requests_decides_once(sqlite_server):
    base, token, apvs, data_dir = sqlite_server
    gitpython = apvs["gitpython"]
    merges = merges_on_main(gitpython["repo"])
    first = assert_one_decided_seven_replayed(
        burst([lambda: decide(base, token, gitpython, key="sqlite-retry")] * 8))
    assert first["action_taken"] == "merged"
    assert merges_on_main(gitpython["repo"]) == merges + 1
    status, _, body = decide(base, token, gitpython, key="sqlite-retry",
                             justification="Another body with the same key.")
    assert (status, body["error"]["code"]) == (422, "idempotency_key_reused")
    assert decision_counts(data_dir)[gitpython["code"]] == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_waiting_on_a_key_is_bounded_on_postgresql(proposed_tx, reviewer, monkeypatch):
    """While another transaction holds the key (the first request still running), a
    request with the key waits IDEMPOTENCY_WAIT_S, then answers 409 in progress and writes
    nothing; once the key is free it decides."""
    import psycopg

    from apps.decisions import services
    from apps.decisions.errors import IdempotencyKeyInProgress
    from apps.decisions.models import Decision
    from tests.decisions.conftest import apv_of

    monkeypatch.setattr(services, "IDEMPOTENCY_WAIT_S", 1)
    apv = apv_of("pyyaml")
    attempt = {"apv_code": apv.code, "reviewer": reviewer, "decision": "approve",
               "justification": JUSTIFICATION, "patch_revision": apv.current_patch.revision,
               "idempotency_key": "held-elsewhere"}
    with psycopg.connect(current_database_url()) as other, other.transaction():
        other.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                      [services.IDEMPOTENCY_LOCK_SPACE, f"{reviewer.pk}:held-elsewhere"])
        started = time.monotonic()
        with pytest.raises(IdempotencyKeyInProgress):
            services.decision_record(**attempt)
        assert 0.9 < time.monotonic() - started < 10
        assert not Decision.objects.exists()
    assert not services.decision_record(**attempt).replayed
    assert Decision.objects.get().action_taken == "merged"
