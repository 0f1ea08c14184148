from django.contrib import admin

from apps.advisories.models import Advisory, AffectedPackage, NvdCve
from apps.advisories.nvd.parser import preferred_metric
from apps.core.admin import ReadOnlyAdmin


class AffectedPackageInline(admin.TabularInline):
    model = AffectedPackage
    extra = 0
    can_delete = False
    fields = ["ecosystem", "name", "purl", "ranges", "fixed_versions"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Advisory)
class AdvisoryAdmin(ReadOnlyAdmin):
    """Advisories come from feeds: read-only here, so an import is the only writer."""

    list_display = ["osv_id", "alias_list", "packages", "severity", "cvss_score", "modified",
                    "withdrawn", "source"]
    list_filter = ["severity", "cvss_source", "source",
                   ("withdrawn", admin.EmptyFieldListFilter)]
    search_fields = ["osv_id", "=alias_rows__alias", "=affected_packages__normalised_name",
                     "summary"]
    ordering = ["-modified"]
    inlines = [AffectedPackageInline]
    show_full_result_count = False

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("affected_packages")

    @admin.display(description="aliases")
    def alias_list(self, obj):
        return ", ".join(obj.aliases[:3])

    @admin.display(description="packages")
    def packages(self, obj):
        return ", ".join(sorted({a.name for a in obj.affected_packages.all()})[:3])


@admin.register(NvdCve)
class NvdCveAdmin(ReadOnlyAdmin):
    """NVD's data per CVE (docs/nvd.md): read-only, written by import_nvd and the beat job."""

    list_display = ["cve", "vuln_status", "preferred_score", "kev_date_added", "last_modified"]
    list_filter = ["vuln_status", ("kev_date_added", admin.EmptyFieldListFilter)]
    search_fields = ["=cve"]
    ordering = ["-last_modified"]
    show_full_result_count = False

    @admin.display(description="CVSS (preferred)")
    def preferred_score(self, obj):
        metric = preferred_metric(obj.metrics)
        if metric is None:
            return "—"
        return f"{metric['base_score']} v{metric['version']} ({metric['type']})"
