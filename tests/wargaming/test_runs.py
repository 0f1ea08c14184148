"""Wargames for real: every built-in PoC gives the right verdicts through the runner, a
user's PoC is picked up from WARGAME_EXPLOIT_DIRS, and a patch's run moves its APVs."""

from __future__ import annotations

import io
import json
import shutil

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from apps.reviews.models import APV
from apps.wargaming.exploits import BUILTIN, exploit_index, parse_exploit
from apps.wargaming.models import WargameRun
from apps.wargaming.services import wargame_execute, wargame_run_package, wargame_start

PACKAGE_POCS = sorted((BUILTIN / "packages").glob("*.py"))


def test_library_has_at_least_ten_real_pocs():
    exploits = [parse_exploit(p) for p in PACKAGE_POCS]
    assert len([e for e in exploits if e is not None]) >= 10
    assert {e.package for e in exploits} >= {"pyyaml", "jinja2", "urllib3", "requests",
                                            "pyjwt", "django", "werkzeug", "aiohttp",
                                            "gitpython"}


@pytest.mark.slow
@pytest.mark.django_db
@pytest.mark.parametrize("poc", PACKAGE_POCS, ids=lambda p: p.stem)
def test_builtin_poc_verdicts(poc):
    exploit = parse_exploit(poc)
    effective = wargame_run_package(package=exploit.package, vulnerable=exploit.vulnerable,
                                    fixed=exploit.fixed, exploit_path=str(poc))
    assert effective.verdict == "patch_effective", [
        (p.name, p.outcome, p.output[-1500:]) for p in effective.phases.all()]
    assert effective.confidence >= 0.85
    # "fixed" to a version that is still vulnerable: the patch does not help
    ineffective = wargame_run_package(package=exploit.package, vulnerable=exploit.vulnerable,
                                      fixed=exploit.vulnerable, exploit_path=str(poc))
    assert ineffective.verdict == "patch_ineffective"
    baseline = effective.phases.get(name="baseline")
    assert baseline.exploited is True and baseline.exit_code == 1
    assert effective.phases.get(name="patched").exploited is False


@pytest.mark.django_db
def test_user_poc_in_wargame_exploit_dirs_is_picked_up(tmp_path, settings):
    user_dir = tmp_path / "my-pocs"
    user_dir.mkdir()
    shutil.copy(BUILTIN / "packages" / "pyyaml_pysec_2021_142.py",
                user_dir / "my_pyyaml_check.py")
    settings.WARGAME_EXPLOIT_DIRS = [str(user_dir)]
    assert any(e.path.parent == user_dir for e in exploit_index())
    out = io.StringIO()
    call_command("wargame", "--package", "PyYAML", "--vulnerable", "5.3.1", "--fixed", "5.4",
                 "--json", stdout=out)
    result = json.loads(out.getvalue())
    assert result["exploit"].endswith("my-pocs/my_pyyaml_check.py")  # the user's PoC wins
    assert result["verdict"] == "patch_effective"
    assert result["baseline"]["exploited"] is True and result["patched"]["exploited"] is False
    assert result["baseline"]["exit_code"] == 1 and result["baseline"]["duration_s"] > 0


@pytest.mark.django_db
def test_command_refuses_a_file_that_is_not_an_exploit(tmp_path):
    bogus = tmp_path / "x.py"
    bogus.write_text("print('hi')\n")
    with pytest.raises(CommandError, match="not an immune exploit"):
        call_command("wargame", "--package", "pyyaml", "--vulnerable", "5.3.1", "--fixed",
                     "5.4", "--exploit", str(bogus), stdout=io.StringIO())


@pytest.mark.django_db
def test_install_failure_is_an_error_not_a_verdict():
    run = wargame_run_package(package="pyyaml", vulnerable="0.0.0-does-not-exist", fixed="5.4")
    assert run.verdict == "error"
    baseline = run.phases.get(name="baseline")
    assert "install" in run.reason and baseline.output  # the installer's message is kept


def test_patch_wargame_moves_status_and_is_idempotent(demo, reviewer):
    apv = APV.objects.select_related("current_patch").get(advisory__osv_id="PYSEC-2021-142")
    run, created = wargame_start(patch=apv.current_patch, trigger="test")
    assert created
    again, created_again = wargame_start(patch=apv.current_patch, trigger="redelivered")
    assert again.pk == run.pk and not created_again
    finished = wargame_execute(run=run)
    assert finished.verdict == "patch_effective"
    assert wargame_execute(run=finished).pk == finished.pk  # a redelivery does nothing
    assert WargameRun.objects.filter(patch=apv.current_patch).count() == 1
    phases = {p.name: p for p in finished.phases.all()}
    assert "pyyaml==5.3.1" in phases["baseline"].environment
    assert "pyyaml==5.4" in phases["patched"].environment
    apv.refresh_from_db()
    assert apv.status == "pending_review"

    api = APIClient()
    api.force_authenticate(reviewer)
    detail = api.get(f"/api/v1/wargaming/runs/{finished.pk}/").json()
    assert detail["verdict"] == "patch_effective"
    assert [p["name"] for p in detail["phases"]] == ["baseline", "patched"]
    started = api.post("/api/v1/wargaming/validate", {"patch": apv.current_patch_id},
                       format="json")
    # It finished before: 200 with the run (202 is for a run still queued or running).
    assert started.status_code == 200
    assert started.json() == {"run": finished.pk, "state": "finished", "created": False,
                              "verdict": "patch_effective",
                              "url": f"http://testserver/api/v1/wargaming/runs/{finished.pk}/"}
    assert started["Location"] == started.json()["url"]


def test_patch_without_an_exploit_is_inconclusive(demo):
    apv = APV.objects.select_related("current_patch").filter(
        dependency__normalised_name="markupsafe").first() or APV.objects.select_related(
        "current_patch").get(advisory__osv_id="PYSEC-2023-207")
    run, _ = wargame_start(patch=apv.current_patch, trigger="test")
    run = wargame_execute(run=run)
    assert run.verdict in ("inconclusive", "patch_effective")
    if run.verdict == "inconclusive":
        assert "no exploit" in run.reason


def test_auto_wargame_on_proposal_moves_through_validating(db, settings, tmp_path,
                                                           django_capture_on_commit_callbacks):
    """WARGAME_AUTO: a proposal is wargamed by the Celery task (in-process here); its APVs
    go patch_proposed → validating → pending_review, with progress events."""
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from apps.advisories.services import advisories_import
    from apps.core.realtime import group_name
    from apps.inventory.services import project_add, project_scan
    from apps.reviews.services.patches import patches_propose
    from apps.wargaming.tasks import validate_patch
    from tests.factories import DEMO_ADVISORIES, make_repo

    settings.WARGAME_AUTO = True
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(group_name("wargames"), channel)
    advisories_import(sources=[str(DEMO_ADVISORIES / "pyyaml")])
    repo = make_repo(tmp_path / "svc", {"requirements.txt": "PyYAML==5.3.1\n"})
    project = project_scan(project=project_add(name="svc", path=str(repo))).project
    with django_capture_on_commit_callbacks(execute=True):
        report = patches_propose(project=project)  # on commit: validate_patch → run_wargame
    patch = report.proposed[0]
    run = WargameRun.objects.get(patch=patch)
    assert run.verdict == "patch_effective" and run.trigger == "proposal"
    apv = APV.objects.get()
    assert apv.status == "pending_review" and apv.pending_review_at is not None
    assert validate_patch.delay(patch.pk).get() == run.pk  # a redelivery starts nothing
    assert WargameRun.objects.filter(patch=patch).count() == 1
    events = async_to_sync(_drain)(layer, channel)
    assert {e["phase"] for e in events} >= {"baseline", "run"}
    assert events[-1]["state"] == "patch_effective"


async def _drain(layer, channel) -> list[dict]:
    """Every queued message's data, on one event loop (channels-redis binds to a loop)."""
    import asyncio

    events = []
    while True:
        try:
            events.append((await asyncio.wait_for(layer.receive(channel), timeout=0.5))["data"])
        except TimeoutError:
            return events
