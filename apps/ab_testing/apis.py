"""A/B testing over REST: ``ab-testing/enable|disable|status|results`` and
``wargaming/ml/accuracy``."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.ab_testing.models import ABTestResult
from apps.ab_testing.selectors import (
    ab_result_list,
    accuracy_report,
    experiment_status,
    with_reviewer_decision,
)
from apps.ab_testing.services import experiment_disable, experiment_enable
from apps.core.filters import Filter
from apps.core.permissions import has_perm


class WindowInput(serializers.Serializer):
    model_version = serializers.IntegerField(min_value=1, required=False)
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)

    def validate(self, attrs):
        if attrs.get("since") and attrs.get("until") and attrs["since"] >= attrs["until"]:
            raise serializers.ValidationError({"until": "must be after since"})
        return attrs


_WINDOW = [OpenApiParameter("model_version", int), OpenApiParameter("since", str),
           OpenApiParameter("until", str)]
_WINDOW_NAMES = ("model_version", "since", "until")


def _known_only(params, extra: tuple[str, ...] = ()) -> None:
    """400 naming every query parameter the endpoint does not take."""
    accepted = {*_WINDOW_NAMES, *extra, "page", "page_size", "format"}
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise serializers.ValidationError({
            name: [f"unknown parameter; this endpoint accepts: {', '.join(sorted(accepted))}"]
            for name in unknown})


class ExperimentOutput(serializers.Serializer):
    id = serializers.IntegerField()
    rate = serializers.FloatField()
    enabled_at = serializers.DateTimeField()
    enabled_by = serializers.CharField()
    via = serializers.CharField()
    results = serializers.IntegerField()


class ActiveModelOutput(serializers.Serializer):
    version = serializers.IntegerField()
    algorithm = serializers.CharField()


class StatusOutput(serializers.Serializer):
    enabled = serializers.BooleanField()
    experiment = ExperimentOutput(allow_null=True)
    active_model = ActiveModelOutput(allow_null=True)
    routing = serializers.CharField()


class ConfusionOutput(serializers.Serializer):
    tp = serializers.IntegerField()
    fp = serializers.IntegerField()
    fn = serializers.IntegerField()
    tn = serializers.IntegerField()


class AccuracyFiltersOutput(serializers.Serializer):
    model_version = serializers.IntegerField(allow_null=True)
    since = serializers.CharField(allow_null=True)
    until = serializers.CharField(allow_null=True)


class AccuracyOutput(serializers.Serializer):
    positive = serializers.CharField()
    filters = AccuracyFiltersOutput()
    confusion_matrix = ConfusionOutput()
    sample_size = serializers.IntegerField()
    accuracy = serializers.FloatField(allow_null=True)
    accuracy_ci95 = serializers.ListField(child=serializers.FloatField(), allow_null=True,
                                          min_length=2, max_length=2)
    precision = serializers.FloatField(allow_null=True)
    recall = serializers.FloatField(allow_null=True)
    f1 = serializers.FloatField(allow_null=True)
    not_counted = serializers.IntegerField(help_text="pairs whose run covered no advisory")
    experiment = StatusOutput()
    cached = serializers.BooleanField()


class AccuracyApi(APIView):
    """Confusion matrix (positive = patch effective), accuracy with its 95 % Wilson
    interval, precision, recall, F1 and sample size; cached 5 minutes, fresh after a new
    result."""

    permission_classes = [has_perm("ab_testing.view_abtestresult")]

    @extend_schema(parameters=_WINDOW, responses={200: AccuracyOutput})
    def get(self, request):
        _known_only(request.query_params)
        window = WindowInput(data=request.query_params)
        window.is_valid(raise_exception=True)
        return Response(accuracy_report(**window.validated_data))


class EnableInput(serializers.Serializer):
    rate = serializers.FloatField(required=False, min_value=0.0001, max_value=1.0)


class EnableApi(APIView):
    permission_classes = [has_perm("ab_testing.change_experiment")]

    @extend_schema(request=EnableInput, responses={200: StatusOutput})
    def post(self, request):
        data = EnableInput(data=request.data)
        data.is_valid(raise_exception=True)
        experiment_enable(rate=data.validated_data.get("rate", settings.AB_TEST_RATE),
                          user=request.user, via="api")
        return Response(experiment_status())


class DisableApi(APIView):
    permission_classes = [has_perm("ab_testing.change_experiment")]

    @extend_schema(request=None, responses={200: StatusOutput})
    def post(self, request):
        experiment_disable(user=request.user, via="api")
        return Response(experiment_status())


class StatusApi(APIView):
    permission_classes = [has_perm("ab_testing.view_experiment")]

    @extend_schema(responses={200: StatusOutput})
    def get(self, request):
        return Response(experiment_status())


class ResultOutput(serializers.ModelSerializer):
    model_version = serializers.IntegerField(source="model_version.version")
    patch = serializers.IntegerField(source="prediction.patch_id")
    patch_revision = serializers.IntegerField(source="prediction.patch_revision")
    reviewer_decision = serializers.CharField(allow_null=True, read_only=True)
    #: The advisories the shadow run's exploit covered: the pair compares the model with
    #: the wargame on these APVs only (none: ``actual_effective`` is null, not counted).
    covered_advisories = serializers.ListField(source="wargame_run.advisories",
                                               child=serializers.CharField(), read_only=True)

    class Meta:
        model = ABTestResult
        fields = ["id", "experiment", "model_version", "patch", "patch_revision",
                  "prediction", "wargame_run", "probability", "predicted_effective",
                  "wargame_verdict", "covered_advisories", "actual_effective", "correct",
                  "ml_latency_ms",
                  "wargame_duration_s", "recorded_at", "reviewer_decision"]


class ResultsApi(ListAPIView):
    """The stored pairs (model vs wargame), newest first, with the reviewer's decision."""

    serializer_class = ResultOutput
    permission_classes = [has_perm("ab_testing.view_abtestresult")]
    queryset = ABTestResult.objects.none()
    filter_backends: list = []

    @extend_schema(parameters=[*_WINDOW, OpenApiParameter("correct", bool)])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return self.queryset
        _known_only(self.request.query_params, ("correct",))
        window = WindowInput(data=self.request.query_params)
        window.is_valid(raise_exception=True)
        qs = with_reviewer_decision(ab_result_list(**window.validated_data)).order_by(
            "-recorded_at", "-id")
        correct = self.request.query_params.get("correct", "")
        if correct:
            try:
                qs = qs.filter(correct=Filter("correct", "bool").parse(correct))
            except ValueError as exc:
                raise serializers.ValidationError({"correct": [str(exc)]}) from exc
        return qs
