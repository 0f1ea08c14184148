from apps.core.instrumentation import instrumented_task
from apps.inventory.errors import ScanFailed
from apps.inventory.models import Project
from apps.inventory.services import project_scan


@instrumented_task(name="inventory.scan_project")
def scan_project(project_id: int) -> dict:
    """Scan one project; running it twice leaves the same APVs (one per exposure)."""
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return {"skipped": f"project {project_id} no longer exists"}
    try:
        result = project_scan(project=project)
    except ScanFailed as exc:  # recorded on the project; retrying would fail the same way
        return {"project": project.name, "failed": exc.message}
    return {"project": project.name, "created": len(result.apvs.created),
            "resolved": len(result.apvs.resolved), "status": result.status}


@instrumented_task(name="inventory.rescan_all")
def rescan_all() -> int:
    """Beat: daily. One task per project so a broken repository fails alone."""
    ids = list(Project.objects.values_list("pk", flat=True))
    for project_id in ids:
        scan_project.delay(project_id)
    return len(ids)
