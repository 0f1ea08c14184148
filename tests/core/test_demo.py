"""``manage.py demo`` loads real work and can be run again without duplicating it."""

import io

import pytest
from django.core.management import call_command

from apps.advisories.models import Advisory
from apps.reviews.models import APV


@pytest.mark.django_db
def test_demo_loads_bundled_advisories_and_scans_the_demo_repository(settings, tmp_path):
    settings.IMMUNE_DATA_DIR = tmp_path
    out = io.StringIO()
    call_command("demo", "--no-wargame", stdout=out)
    assert (tmp_path / "repos" / "demo" / ".git").is_dir()
    assert Advisory.objects.filter(source="immune-demo").count() == 62  # 55 + 7 demo-service
    packages = set(APV.objects.values_list("dependency__normalised_name", flat=True))
    assert {"pyyaml", "jinja2", "urllib3", "django"} <= packages
    assert "markupsafe" not in packages  # pinned, but no advisory affects 1.1.1
    codes = set(APV.objects.values_list("code", flat=True))
    call_command("demo", "--no-wargame", stdout=io.StringIO())
    assert set(APV.objects.values_list("code", flat=True)) == codes
    assert "0 new" not in out.getvalue()
    assert set(APV.objects.values_list("status", flat=True)) == {"pending_review"}
    assert "patches for demo: 9 upgrade(s) (0 of them deliberately bad), 1 manual, 14 code " \
        "patch(es)" in out.getvalue()


# --- issue 13: a kept data folder with a new database; production settings ---------------

DEMO = """
from django.core.management import call_command
from django.conf import settings
from apps.reviews.models import APV
call_command('migrate', verbosity=0)
call_command('demo', '--no-wargame', stdout=sys.stderr)
print(json.dumps({'statuses': sorted(set(APV.objects.values_list('status', flat=True))),
                  'wargame_auto': settings.WARGAME_AUTO}))
"""
PATCHES_LINE = ("patches for demo: 9 upgrade(s) (0 of them deliberately bad), 1 manual, "
                "14 code patch(es)")


def _patch_branches(repo) -> list[str]:
    from tests.factories import git

    return git(repo, "branch", "--list", "immune/*", "--format=%(refname:short)").split()


def test_demo_runs_again_over_its_data_folder_with_a_new_database(tmp_path):
    """The embedded default (SQLite in the data folder): the database file is removed
    between two runs, the demo repositories stay. The second run starts the repository
    afresh instead of colliding with the first run's branches."""
    from tests.helpers import last_json_line, run_django

    env = {"DATABASE_URL": "", "REDIS_URL": "", "CELERY_BROKER_URL": "",
           "CELERY_RESULT_BACKEND": "", "CELERY_TASK_ALWAYS_EAGER": "",
           "IMMUNE_DATA_DIR": str(tmp_path)}
    first = run_django(DEMO, env=env, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    repo = tmp_path / "repos" / "demo"
    assert len(_patch_branches(repo)) == 23  # 9 upgrades + 14 code patches (manual: none)

    for database in tmp_path.glob("immune.sqlite3*"):
        database.unlink()
    second = run_django(DEMO, env=env, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "PatchConflict" not in second.stderr and PATCHES_LINE in second.stderr
    assert last_json_line(second.stdout)["statuses"] == ["pending_review"]
    assert len(_patch_branches(repo)) == 23  # made anew: none of the first run's is left


def test_demo_refuses_to_replace_a_folder_that_is_not_its_repository(tmp_path):
    from apps.demo.services import recreate_demo_repository

    folder = tmp_path / "repos" / "demo"
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("someone's work")
    with pytest.raises(RuntimeError, match="not a demo repository"):
        recreate_demo_repository(folder)
    assert (folder / "notes.txt").read_text() == "someone's work"


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_demo_runs_under_production_settings(tmp_path):
    """DJANGO_ENV=production (WARGAME_AUTO on, tasks queued on a broker of our own, no
    worker): the corpus is proposed without being routed on the way, so the second code
    patch revision of an APV is not refused; every APV waits for review."""
    from tests.faults import production_env, redis_server
    from tests.helpers import current_database_url, last_json_line, run_django

    with redis_server(tmp_path) as redis:
        env = production_env(DATABASE_URL=current_database_url(), REDIS_URL=redis.url,
                             IMMUNE_DATA_DIR=str(tmp_path))
        ran = run_django(DEMO, env=env, timeout=300)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert PATCHES_LINE in ran.stderr
    result = last_json_line(ran.stdout)
    assert result == {"statuses": ["pending_review"], "wargame_auto": True}
