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


class AccuracyApi(APIView):
    """Confusion matrix (positive = patch effective), accuracy with its 95 % Wilson
    interval, precision, recall, F1 and sample size; cached 5 minutes, fresh after a new
    result."""

    permission_classes = [has_perm("ab_testing.view_abtestresult")]

    @extend_schema(parameters=_WINDOW, responses={200: dict})
    def get(self, request):
        window = WindowInput(data=request.query_params)
        window.is_valid(raise_exception=True)
        return Response(accuracy_report(**window.validated_data))


class EnableInput(serializers.Serializer):
    rate = serializers.FloatField(required=False, min_value=0.0001, max_value=1.0)


class EnableApi(APIView):
    permission_classes = [has_perm("ab_testing.change_experiment")]

    @extend_schema(request=EnableInput, responses={200: dict})
    def post(self, request):
        data = EnableInput(data=request.data)
        data.is_valid(raise_exception=True)
        experiment_enable(rate=data.validated_data.get("rate", settings.AB_TEST_RATE),
                          user=request.user, via="api")
        return Response(experiment_status())


class DisableApi(APIView):
    permission_classes = [has_perm("ab_testing.change_experiment")]

    @extend_schema(request=None, responses={200: dict})
    def post(self, request):
        experiment_disable(user=request.user, via="api")
        return Response(experiment_status())


class StatusApi(APIView):
    permission_classes = [has_perm("ab_testing.view_experiment")]

    @extend_schema(responses={200: dict})
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
    serializer_class = ResultOutput
    permission_classes = [has_perm("ab_testing.view_abtestresult")]
    queryset = ABTestResult.objects.none()

    @extend_schema(parameters=[*_WINDOW, OpenApiParameter("correct", bool)])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return self.queryset
        window = WindowInput(data=self.request.query_params)
        window.is_valid(raise_exception=True)
        qs = with_reviewer_decision(ab_result_list(**window.validated_data)).order_by(
            "-recorded_at", "-id")
        correct = self.request.query_params.get("correct")
        if correct in ("true", "false"):
            qs = qs.filter(correct=correct == "true")
        return qs
