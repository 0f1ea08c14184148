from django.conf import settings

from apps.core.instrumentation import instrumented_task
from apps.reviews.models import Patch
from apps.wargaming.models import WargameRun
from apps.wargaming.services import wargame_execute, wargame_reap, wargame_start

# The task's limits sit between the run's own timeout and the reaper's cutoff (timeout +
# grace): the soft limit ends the run "timeout" from inside, the hard limit kills a worker
# that ignored it, and only then may the reaper call the run lost.
RUN_SOFT_TIME_LIMIT = int(settings.WARGAME_RUN_TIMEOUT_S + settings.WARGAME_REAP_GRACE_S / 2)
RUN_TIME_LIMIT = int(settings.WARGAME_RUN_TIMEOUT_S + settings.WARGAME_REAP_GRACE_S * 3 / 4)


@instrumented_task(name="wargaming.run", acks_late=True, soft_time_limit=RUN_SOFT_TIME_LIMIT,
                   time_limit=RUN_TIME_LIMIT)
def run_wargame(run_id: int) -> str | None:
    """Run a queued wargame. Redelivered (acks_late after a worker died)? A run another
    live worker holds is left alone; one whose worker is gone runs again."""
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


@instrumented_task(name="wargaming.reap")
def reap_wargames() -> dict:
    """Beat, every minute: end lost runs, re-enqueue forgotten ones, clean the sandbox."""
    return wargame_reap()


@instrumented_task(name="wargaming.build_corpus", acks_late=False)
def build_corpus(packages: list[str] | None = None, max_per_package: int | None = None,
                 max_earlier: int | None = None) -> dict:
    """``manage.py build_corpus`` as a job (it runs for many minutes: acknowledged on
    receipt, so a lost worker never hands it to another; it is resumable instead)."""
    import structlog

    from apps.wargaming.corpus import DEFAULT_MAX_EARLIER, DEFAULT_MAX_PER_PACKAGE, corpus_build

    log = structlog.get_logger("apps.wargaming.corpus")
    cap = DEFAULT_MAX_PER_PACKAGE if max_per_package is None else (max_per_package or None)
    earlier = DEFAULT_MAX_EARLIER if max_earlier is None else max_earlier
    return corpus_build(packages=packages, max_per_package=cap, max_earlier=earlier,
                        say=lambda line: log.info("wargaming.corpus_progress", line=line),
                        command="celery task wargaming.build_corpus").as_dict()
