"""Model versions (activate one: a confirmation page, audited), activations and
predictions in the admin; all read-only evidence otherwise."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.safestring import mark_safe

from apps.core.admin import ReadOnlyAdmin
from apps.core.errors import ApplicationError
from apps.ml.charts import calibration_svg
from apps.ml.models import ModelActivation, ModelVersion, Prediction
from apps.ml.services import model_activate


class ActivateForm(forms.Form):
    reason = forms.CharField(min_length=10, max_length=2000, widget=forms.Textarea(
        attrs={"rows": 3}), help_text="Why this version should route patches from now on.")


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    list_display = ["version", "algorithm", "is_active", "training_size", "cv_accuracy",
                    "grouped_accuracy", "cv_f1", "cv_roc_auc", "cv_brier", "grouped_brier",
                    "trigger", "created_at"]
    list_filter = ["is_active", "algorithm"]
    exclude = ["artifact", "evaluation"]
    change_form_template = "admin/ml/modelversion/change_form.html"

    def get_queryset(self, request):
        return super().get_queryset(request).defer("artifact")

    def has_activate_permission(self, request) -> bool:
        return request.user.has_perm("ml.activate_modelversion")

    def get_urls(self):
        return [path("<int:object_id>/activate/",
                     self.admin_site.admin_view(self.activate_view),
                     name="ml_modelversion_activate"), *super().get_urls()]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        version = ModelVersion.objects.filter(pk=object_id).only("evaluation").first()
        evaluation = version.evaluation if version is not None else {}
        # The chart holds numbers and fixed words only (charts.py escapes the rest).
        chart = mark_safe(calibration_svg(evaluation))  # noqa: S308
        extra = {**(extra_context or {}), "can_activate": self.has_activate_permission(request),
                 "activations": ModelActivation.objects.filter(model_version_id=object_id)
                 .select_related("previous"),
                 "evaluations": [(label, evaluation.get(key)) for key, label in (
                     ("stratified", "Stratified folds (patches like those it has seen)"),
                     ("grouped", "Leave one package out (a package it never saw)"))
                     if evaluation.get(key)],
                 "per_package": (evaluation.get("grouped") or {}).get("per_package", []),
                 "per_strategy": sorted(((evaluation.get("grouped") or {})
                                         .get("per_strategy") or {}).items()),
                 "calibration_chart": chart}
        return super().change_view(request, object_id, form_url, extra)

    def activate_view(self, request, object_id):
        if not self.has_activate_permission(request):
            raise PermissionDenied
        version = get_object_or_404(ModelVersion.objects.defer("artifact"), pk=object_id)
        detail = reverse("admin:ml_modelversion_change", args=[version.pk])
        form = ActivateForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                model_activate(model_version=version, actor=request.user, via="admin",
                               reason=form.cleaned_data["reason"],
                               client_ip=request.META.get("REMOTE_ADDR") or None,
                               user_agent=request.META.get("HTTP_USER_AGENT", ""))
            except ApplicationError as exc:
                self.message_user(request, exc.message, messages.ERROR)
            else:
                self.message_user(request, f"Model v{version.version} is now active.",
                                  messages.SUCCESS)
            return HttpResponseRedirect(detail)
        active = ModelVersion.objects.filter(is_active=True).defer("artifact").first()
        return TemplateResponse(request, "admin/ml/modelversion/activate.html", {
            **self.admin_site.each_context(request), "opts": self.model._meta,
            "title": f"Activate model v{version.version}", "version": version,
            "active": active, "form": form, "detail_url": detail})


@admin.register(ModelActivation)
class ModelActivationAdmin(ReadOnlyAdmin):
    list_display = ["at", "model_version", "previous", "actor_name", "via", "reason"]
    list_filter = ["via"]


@admin.register(Prediction)
class PredictionAdmin(ReadOnlyAdmin):
    list_display = ["id", "patch", "patch_revision", "model_version", "probability",
                    "confidence", "route", "ab_sampled", "outcome_verdict", "agrees",
                    "latency_ms", "created_at"]
    list_filter = ["route", "ab_sampled", "agrees", "model_version"]
    list_select_related = ["patch", "model_version"]
