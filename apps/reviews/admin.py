from django.contrib import admin
from django.utils import timezone
from django.utils.html import format_html

from apps.reviews.models import APV, APVStatus

SEVERITY_COLOURS = {"critical": "#7f1d1d", "high": "#b91c1c", "medium": "#b45309",
                    "low": "#1d4ed8", "none": "#6b7280", "unknown": "#6b7280"}


class OverdueFilter(admin.SimpleListFilter):
    title = "overdue"
    parameter_name = "overdue"

    def lookups(self, request, model_admin):
        return [("yes", "Past SLA"), ("no", "Within SLA")]

    def queryset(self, request, queryset):
        late = {"sla_due_at__lt": timezone.now()}
        if self.value() == "yes":
            return queryset.filter(**late).exclude(status=APVStatus.RESOLVED)
        if self.value() == "no":
            return queryset.exclude(**late)
        return queryset


@admin.register(APV)
class APVAdmin(admin.ModelAdmin):
    list_display = ["code", "project", "package", "advisory_id", "severity_badge", "priority",
                    "sla_due_at", "status"]
    list_filter = ["status", "severity", "project", OverdueFilter]
    search_fields = ["code", "=advisory__osv_id", "=advisory__alias_rows__alias",
                     "=dependency__normalised_name"]
    list_select_related = ["project", "dependency", "advisory"]
    ordering = ["-priority", "sla_due_at"]
    readonly_fields = [f.name for f in APV._meta.fields]

    @admin.display(description="package", ordering="dependency__normalised_name")
    def package(self, obj):
        return f"{obj.dependency.name} {obj.dependency.version}"

    @admin.display(description="advisory", ordering="advisory__osv_id")
    def advisory_id(self, obj):
        return obj.advisory.osv_id

    @admin.display(description="severity", ordering="severity")
    def severity_badge(self, obj):
        return format_html(
            '<span style="background:{};color:#fff;padding:1px 6px;border-radius:8px">{}</span>',
            SEVERITY_COLOURS.get(obj.severity, "#6b7280"), obj.severity,
        )

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
