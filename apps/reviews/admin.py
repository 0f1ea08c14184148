from django import forms
from django.contrib import admin
from django.utils import timezone
from django.utils.html import format_html

from apps.core.errors import ApplicationError
from apps.reviews.models import APV, APVStatus, Patch
from apps.reviews.services.patches import PROPOSABLE, patch_submit_code

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


class CodePatchForm(forms.ModelForm):
    """Submit a unified diff for an APV: checked with ``git apply --check`` first."""

    apv = forms.ModelChoiceField(
        queryset=APV.objects.filter(status__in=[*PROPOSABLE, APVStatus.PENDING_REVIEW])
        .select_related("dependency").order_by("code"),
        help_text="the APV this diff fixes",
    )
    title = forms.CharField(max_length=300, required=False)
    diff = forms.CharField(widget=forms.Textarea(attrs={"rows": 20, "cols": 100}),
                           strip=False, help_text="unified diff against the default branch")

    class Meta:
        model = Patch
        fields: list[str] = []

    def __init__(self, *args, request=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.request = request
        self.created: Patch | None = None

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        try:
            self.created = patch_submit_code(apv=data["apv"], diff=data["diff"],
                                             title=data.get("title", ""),
                                             created_by=getattr(self.request, "user", None))
        except ApplicationError as exc:
            raise forms.ValidationError(exc.message) from exc
        return data

    def save(self, commit=True):
        return self.created

    def save_m2m(self):
        """The service linked the APVs already."""


@admin.register(Patch)
class PatchAdmin(admin.ModelAdmin):
    list_display = ["title", "project", "strategy", "revision", "state", "risk_level", "branch",
                    "created_at"]
    list_filter = ["strategy", "state", "risk_level", "project"]
    search_fields = ["title", "package", "branch", "apvs__code"]
    list_select_related = ["project"]
    readonly_fields = [f.name for f in Patch._meta.fields]

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            form = CodePatchForm

            class BoundForm(form):
                def __init__(self, *args, **kw):
                    super().__init__(*args, request=request, **kw)

            return BoundForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        return ["apv", "title", "diff"] if obj is None else super().get_fields(request, obj)

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.readonly_fields

    def save_model(self, request, obj, form, change):
        """Patches are written by the services (the add form calls patch_submit_code)."""

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
