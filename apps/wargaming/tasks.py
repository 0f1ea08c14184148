from apps.core.instrumentation import instrumented_task
from apps.reviews.models import Patch
from apps.wargaming.models import WargameRun
from apps.wargaming.services import wargame_execute, wargame_start


@instrumented_task(name="wargaming.run", acks_late=True, soft_time_limit=900)
def run_wargame(run_id: int) -> str | None:
    """Run a queued wargame. Redelivered (acks_late after a worker died)? The run is no
    longer queued and nothing starts twice."""
    run = WargameRun.objects.filter(pk=run_id).select_related("patch", "patch__project").first()
    if run is None:
        return None
    return wargame_execute(run=run).verdict


@instrumented_task(name="wargaming.validate_patch", acks_late=True)
def validate_patch(patch_id: int) -> int | None:
    patch = Patch.objects.filter(pk=patch_id).first()
    if patch is None:
        return None
    run, created = wargame_start(patch=patch, trigger="proposal")
    if created:
        run_wargame.delay(run.pk)
    return run.pk
