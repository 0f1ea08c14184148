from django import forms
from django.contrib import admin

from apps.core.errors import ApplicationError
from apps.reviews.models import APV, APVStatus, Patch
from apps.reviews.services.patches import PROPOSABLE, patch_submit_code


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
