from apps.core.instrumentation import instrumented_task
from apps.inventory.models import Project
from apps.reviews.services.patches import patches_propose


@instrumented_task(name="reviews.propose_patches")
def propose_patches(project_id: int | None = None) -> dict:
    """A patch for every open APV (of one project, or all); safe to run twice: APVs that
    already have a patch are no longer open."""
    project = Project.objects.filter(pk=project_id).first() if project_id else None
    report = patches_propose(project=project)
    return {"proposed": len(report.proposed), "manual": len(report.manual),
            "failed": report.failed}
