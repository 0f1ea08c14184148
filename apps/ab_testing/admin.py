"""A/B testing in the admin: the report (confusion matrix, accuracy over time per model
version, disagreements with the reviewer's decision) above the results list, and the
experiments with enable/disable for leads."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from apps.ab_testing.charts import accuracy_chart
from apps.ab_testing.models import ABTestResult, Experiment
from apps.ab_testing.selectors import accuracy_by_package, accuracy_report, disagreements
from apps.ab_testing.services import experiment_disable, experiment_enable
from apps.core.admin import ReadOnlyAdmin
from apps.core.errors import ApplicationError


class EnableForm(forms.Form):
    rate = forms.FloatField(min_value=0.0001, max_value=1.0, initial=settings.AB_TEST_RATE)


@admin.register(Experiment)
class ExperimentAdmin(ReadOnlyAdmin):
    list_display = ["id", "enabled", "rate", "enabled_at", "enabled_by_name", "disabled_at",
                    "disabled_by_name", "via"]
    change_list_template = "admin/ab_testing/experiment/change_list.html"

    def has_toggle_permission(self, request) -> bool:
        return request.user.has_perm("ab_testing.change_experiment")

    def get_urls(self):
        return [path("toggle/", self.admin_site.admin_view(require_POST(self.toggle_view)),
                     name="ab_testing_experiment_toggle"), *super().get_urls()]

    def changelist_view(self, request, extra_context=None):
        extra = {**(extra_context or {}), "can_toggle": self.has_toggle_permission(request),
                 "current": Experiment.objects.filter(enabled=True).first(),
                 "enable_form": EnableForm()}
        return super().changelist_view(request, extra)

    def toggle_view(self, request):
        if not self.has_toggle_permission(request):
            raise PermissionDenied
        try:
            if request.POST.get("action") == "disable":
                experiment_disable(user=request.user, via="admin")
                self.message_user(request, "A/B testing disabled.", messages.SUCCESS)
            else:
                form = EnableForm(request.POST)
                if not form.is_valid():
                    self.message_user(request, f"Not enabled: {form.errors.as_text()}",
                                      messages.ERROR)
                else:
                    experiment = experiment_enable(rate=form.cleaned_data["rate"],
                                                   user=request.user, via="admin")
                    self.message_user(request, f"A/B testing enabled at rate "
                                      f"{experiment.rate:.2f}.", messages.SUCCESS)
        except ApplicationError as exc:
            self.message_user(request, exc.message, messages.ERROR)
        return HttpResponseRedirect(reverse("admin:ab_testing_experiment_changelist"))


@admin.register(ABTestResult)
class ABTestResultAdmin(ReadOnlyAdmin):
    list_display = ["recorded_at", "model_version", "patch_link", "p_effective",
                    "predicted_effective", "wargame_verdict", "covers", "correct", "latency",
                    "wargame_duration_s"]
    list_filter = ["correct", "model_version", "wargame_verdict"]
    list_select_related = ["model_version", "prediction__patch", "wargame_run"]
    change_list_template = "admin/ab_testing/abtestresult/change_list.html"

    @admin.display(description="patch")
    def patch_link(self, obj):
        return f"{obj.prediction.patch.title} r{obj.prediction.patch_revision}"

    @admin.display(description="exploit covers")
    def covers(self, obj):
        """The advisories the comparison is about (verdict scope); none: not counted."""
        return ", ".join(obj.wargame_run.advisories) or "no advisory (not counted)"

    @admin.display(description="P(effective)", ordering="probability")
    def p_effective(self, obj):
        return f"{obj.probability:.3f}"

    @admin.display(description="prediction ms", ordering="ml_latency_ms")
    def latency(self, obj):
        return f"{obj.ml_latency_ms:.2f}"

    def changelist_view(self, request, extra_context=None):
        report = accuracy_report()
        extra = {**(extra_context or {}), "report": report, "chart": accuracy_chart(),
                 "per_package": accuracy_by_package(),
                 "disagreements": list(disagreements()[:50])}
        return super().changelist_view(request, extra)
