from django.contrib import admin, messages

from apps.core.errors import ApplicationError
from apps.inventory.models import Dependency, Project
from apps.inventory.services import project_add, project_scan


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "path", "default_branch", "last_scanned_at", "open_apvs"]
    search_fields = ["name", "path"]
    actions = ["scan"]
    fields = ["name", "path", "default_branch", "description", "last_scanned_at",
              "last_scanned_commit", "last_scan_errors"]
    readonly_fields = ["last_scanned_at", "last_scanned_commit", "last_scan_errors"]

    @admin.display(description="open APVs")
    def open_apvs(self, obj):
        return obj.apvs.exclude(status="resolved").count()

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        # New projects go through the service, which checks the git working copy.
        project = project_add(name=obj.name, path=obj.path, default_branch=obj.default_branch,
                              description=obj.description, created_by=request.user)
        obj.pk = project.pk

    @admin.action(description="Scan selected projects", permissions=["change"])
    def scan(self, request, queryset):
        for project in queryset:
            try:
                result = project_scan(project=project)
            except ApplicationError as exc:
                self.message_user(request, f"{project.name}: {exc.message}", messages.ERROR)
                continue
            self.message_user(
                request,
                f"{project.name}: {result.dependencies} dependencies, "
                f"{len(result.apvs.created)} new APVs, {len(result.apvs.resolved)} resolved",
                messages.SUCCESS,
            )


@admin.register(Dependency)
class DependencyAdmin(admin.ModelAdmin):
    list_display = ["name", "version", "ecosystem", "project", "manifest_path", "line", "direct",
                    "present"]
    list_filter = ["ecosystem", "direct", "present", "project"]
    search_fields = ["normalised_name", "manifest_path"]
    list_select_related = ["project"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
