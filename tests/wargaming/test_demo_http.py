"""The demo's web service: HTTP wargames give patch_effective for the good fixes and
patch_ineffective for the bad ones, from real attacks on services started from each
revision; the regression phase runs the service's own tests."""

from __future__ import annotations

import pytest

from apps.reviews.models import APV, Patch
from apps.wargaming.services import wargame_execute, wargame_start

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("cwe", ["89", "22"])
def test_demo_service_patches_get_real_verdicts(demo, cwe):
    apv = APV.objects.get(advisory__osv_id=f"IMMUNE-DEMO-CWE-{cwe}")
    patches = {("effective" if "(effective" in p.title else "ineffective"): p
               for p in Patch.objects.filter(apvs=apv, strategy="code_patch")}
    assert set(patches) == {"effective", "ineffective"}
    verdicts = {}
    for kind, patch in patches.items():
        run, _ = wargame_start(patch=patch, trigger="test")
        run = wargame_execute(run=run)
        verdicts[kind] = run
        assert run.kind == "http" and run.exploit.endswith(".py")
        assert f"cwe_{cwe}_" in run.exploit
    good, bad = verdicts["effective"], verdicts["ineffective"]
    assert good.verdict == "patch_effective", [(p.name, p.outcome, p.output[-800:])
                                               for p in good.phases.all()]
    assert bad.verdict == "patch_ineffective"
    phases = {p.name: p for p in good.phases.all()}
    assert phases["baseline"].exploited is True and phases["patched"].exploited is False
    assert phases["regression"].outcome == "passed"
    # the service and its exploit share a network namespace of the phase's own, not the host's
    assert good.network_isolated is True
    assert good.sandbox["sandbox"] == "bubblewrap"
    apv.refresh_from_db()
    assert apv.status == "pending_review"


def test_demo_service_flaw_without_a_service_command_is_inconclusive(demo):
    apv = APV.objects.select_related("project").get(advisory__osv_id="IMMUNE-DEMO-CWE-78")
    project = apv.project
    project.service_command = ""
    project.save()
    patch = Patch.objects.filter(apvs=apv, strategy="code_patch").first()
    run, _ = wargame_start(patch=patch, trigger="test")
    run = wargame_execute(run=run)
    assert run.verdict == "inconclusive" and "service_command" in run.reason
