from django import forms
from django.contrib import admin, messages
from django.utils.html import format_html, format_html_join

from apps.core.errors import ApplicationError
from apps.inventory.manifests.globs import InvalidPattern, clean_patterns
from apps.inventory.models import Dependency, Project
from apps.inventory.services import project_add, project_scan


class GlobListField(forms.CharField):
    """A list of glob patterns edited as text, one pattern per line."""

    widget = forms.Textarea(attrs={"rows": 3, "cols": 60})

    def prepare_value(self, value):
        if isinstance(value, list):
            return "\n".join(value)
        return value

    def to_python(self, value):
        lines = (super().to_python(value) or "").splitlines()
        try:
            return clean_patterns(lines, field=self.label or "patterns")
        except InvalidPattern as exc:
            raise forms.ValidationError(str(exc)) from exc


class ProjectForm(forms.ModelForm):
    manifest_include = GlobListField(
        required=False, label="include manifests",
        help_text="one glob per line, on paths relative to the repository root; when set, "
                  "only matching manifests are read (** spans folders)")
    manifest_exclude = GlobListField(
        required=False, label="exclude manifests",
        help_text="one glob per line; matching manifests are never read, e.g. tests/**")

    class Meta:
        model = Project
        fields = ["name", "path", "default_branch", "description", "manifest_include",
                  "manifest_exclude"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    form = ProjectForm
    list_display = ["name", "path", "default_branch", "last_scanned_at", "last_scan",
                    "open_apvs"]
    list_filter = ["last_scan_status"]
    search_fields = ["name", "path"]
    actions = ["scan"]
    fields = ["name", "path", "default_branch", "description", "manifest_include",
              "manifest_exclude", "last_scanned_at",
              "last_scanned_commit", "last_scan_status", "last_scan_attempted_at",
              "scan_errors"]
    readonly_fields = ["last_scanned_at", "last_scanned_commit", "last_scan_status",
                       "last_scan_attempted_at", "scan_errors"]

    @admin.display(description="last scan", ordering="last_scan_status")
    def last_scan(self, obj):
        if not obj.last_scan_status:
            return "never"
        count = len(obj.last_scan_errors or [])
        return f"{obj.get_last_scan_status_display()}, {count} error{'s' * (count != 1)}" \
            if count else obj.get_last_scan_status_display()

    @admin.display(description="last scan errors")
    def scan_errors(self, obj):
        """One line per error: where (path:line) and why; escaped, whatever a repository put
        in its file names."""
        errors = obj.last_scan_errors or []
        if not errors:
            return "none"
        return format_html("<ul>{}</ul>", format_html_join(
            "", "<li><code>{}</code> {}</li>",
            ((f"{e.get('manifest') or '(repository)'}"
              f"{':' + str(e['line']) if e.get('line') else ''}", e.get("reason", ""))
             for e in errors)))

    @admin.display(description="open APVs")
    def open_apvs(self, obj):
        return obj.apvs.exclude(status="resolved").count()

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        # New projects go through the service, which checks the git working copy.
        project = project_add(name=obj.name, path=obj.path, default_branch=obj.default_branch,
                              description=obj.description, created_by=request.user,
                              manifest_include=obj.manifest_include,
                              manifest_exclude=obj.manifest_exclude)
        obj.pk = project.pk

    @admin.action(description="Scan selected projects", permissions=["change"])
    def scan(self, request, queryset):
        for project in queryset:
            try:
                result = project_scan(project=project)
            except ApplicationError as exc:
                self.message_user(request, f"{project.name}: {exc.message}", messages.ERROR)
                continue
            skipped = f", {len(result.errors)} errors (see the project)" if result.errors else ""
            if result.excluded:
                skipped += f", {len(result.excluded)} manifests excluded by its patterns"
            self.message_user(
                request,
                f"{project.name}: {result.dependencies} dependencies, "
                f"{len(result.apvs.created)} new APVs, {len(result.apvs.resolved)} resolved"
                f"{skipped}",
                messages.WARNING if result.errors else messages.SUCCESS,
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
