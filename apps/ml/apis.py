"""ML-first over REST: ``wargaming/ml-first``, and ``ml/models`` (list, detail, activate,
train)."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.generics import ListAPIView, RetrieveAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.filters import Filter, ListQuery, query_params
from apps.core.permissions import has_perm
from apps.core.queue import enqueue_on_commit, require_broker
from apps.core.schema import errors
from apps.ml.models import ModelVersion, Prediction, Route
from apps.ml.services import labels_count, ml_first_route, model_activate
from apps.reviews.models import Patch


class TopFeatureOutput(serializers.Serializer):
    feature = serializers.CharField()
    effect = serializers.FloatField(help_text="change in P(effective) it caused; positive: "
                                              "towards effective")


class PredictionSnapshotOutput(serializers.Serializer):
    """The current patch's ML-first prediction as a reviewer sees it (the APV detail, the
    decision audit)."""

    id = serializers.IntegerField()
    route = serializers.ChoiceField(choices=Route.choices)
    reason = serializers.CharField()
    model_version = serializers.IntegerField(allow_null=True)
    probability = serializers.FloatField(help_text="P(patch effective)")
    confidence = serializers.FloatField()
    predicted_effective = serializers.BooleanField()
    top_features = TopFeatureOutput(many=True)
    ab_sampled = serializers.BooleanField(help_text="also wargamed as A/B ground truth")


class PredictionOutput(serializers.ModelSerializer):
    model_version = serializers.IntegerField(source="model_version.version", allow_null=True,
                                             default=None)
    features = serializers.DictField(help_text="the patch's features, by name")
    top_features = TopFeatureOutput(many=True, read_only=True,
                                    help_text="the features that moved the probability most")

    class Meta:
        model = Prediction
        fields = ["id", "patch", "patch_revision", "model_version", "probability",
                  "confidence", "predicted_effective", "threshold", "route", "reason",
                  "features", "top_features", "latency_ms", "cached", "wargame_run",
                  "ab_sampled", "outcome_verdict", "agrees", "created_at"]


class ModelVersionOutput(serializers.ModelSerializer):
    parameters = serializers.DictField(help_text="the estimator's hyper-parameters")
    class_balance = serializers.DictField(child=serializers.IntegerField(),
                                          help_text="labels per class")
    candidates = serializers.ListField(
        child=serializers.DictField(), help_text="every algorithm tried, with its "
        "cross-validated metrics, and why this one won")

    class Meta:
        model = ModelVersion
        fields = ["version", "algorithm", "parameters", "training_size", "class_balance",
                  "cv_folds", "cv_accuracy", "cv_precision", "cv_recall", "cv_f1",
                  "cv_roc_auc", "cv_brier", "candidates", "artifact_format",
                  "artifact_sha256", "trigger", "training_seconds", "is_active",
                  "activated_at", "created_at"]


class MlFirstInput(serializers.Serializer):
    patch = serializers.IntegerField(min_value=1)


class MlFirstApi(APIView):
    """Predict a patch with the active model and route it, now: ``ml`` (straight to
    review) or ``wargame`` (a run is queued; its id is returned)."""

    permission_classes = [has_perm("reviews.add_patch")]

    @extend_schema(request=MlFirstInput, responses={200: inline_serializer("MlFirstOutput", {
        "route": serializers.ChoiceField(choices=Route.choices),
        "reason": serializers.CharField(),
        "prediction": PredictionOutput(), "run": serializers.IntegerField(allow_null=True),
        "run_created": serializers.BooleanField(),
        "active_model": serializers.IntegerField(allow_null=True)}), **errors(
        _503="No broker to queue a wargame on (service_unavailable).")})
    def post(self, request):
        data = MlFirstInput(data=request.data)
        data.is_valid(raise_exception=True)
        patch = get_object_or_404(Patch, pk=data.validated_data["patch"])
        require_broker()  # either route may start a wargame
        routing = ml_first_route(patch=patch, trigger=f"api:{request.user.get_username()}")
        prediction = routing.prediction
        return Response({
            "route": prediction.route, "reason": prediction.reason,
            "prediction": PredictionOutput(prediction).data,
            "run": routing.run.pk if routing.run else None, "run_created": routing.run_created,
            "active_model": prediction.model_version.version
            if prediction.model_version else None,
        })


class ModelListApi(ListAPIView):
    """Model versions, newest first."""

    serializer_class = ModelVersionOutput
    permission_classes = [has_perm("ml.view_modelversion")]
    queryset = ModelVersion.objects.defer("artifact").order_by("-version")
    filter_backends: list = []

    def get_queryset(self):
        ListQuery().parse(query_params(self))  # 400 on a parameter it does not take
        return super().get_queryset()


class ModelDetailApi(RetrieveAPIView):
    serializer_class = ModelVersionOutput
    permission_classes = [has_perm("ml.view_modelversion")]
    queryset = ModelVersion.objects.defer("artifact")
    lookup_field = "version"


class ActivateInput(serializers.Serializer):
    reason = serializers.CharField(min_length=10, max_length=2000)


class ModelActivateApi(APIView):
    """Make a model version the active one (leads; audited with who, when, from where)."""

    permission_classes = [has_perm("ml.activate_modelversion")]

    @extend_schema(request=ActivateInput, responses={200: ModelVersionOutput, **errors(
        _409="The version is already the active one (conflict).")})
    def post(self, request, version: int):
        data = ActivateInput(data=request.data)
        data.is_valid(raise_exception=True)
        model = get_object_or_404(ModelVersion.objects.defer("artifact"), version=version)
        model_activate(model_version=model, actor=request.user, via="api",
                       reason=data.validated_data["reason"],
                       client_ip=request.META.get("REMOTE_ADDR") or None,
                       user_agent=request.META.get("HTTP_USER_AGENT", ""))
        model.refresh_from_db()
        return Response(ModelVersionOutput(model).data)


class TrainApi(APIView):
    """Queue a training (leads): 202 with the labels there are now."""

    permission_classes = [has_perm("ml.activate_modelversion")]

    @extend_schema(request=None, responses={202: inline_serializer("TrainOutput", {
        "queued": serializers.BooleanField(),
        "labels": serializers.DictField(child=serializers.IntegerField(),
                                        help_text="labels per class")}), **errors(
        _503="No broker to queue the training on (service_unavailable).")})
    def post(self, request):
        from apps.ml.tasks import train_model

        trigger = f"api:{request.user.get_username()}"
        require_broker()
        enqueue_on_commit(train_model, trigger)
        return Response({"queued": True, "labels": labels_count()}, status=202)


PREDICTION_QUERY = ListQuery(
    filters=[
        Filter("patch", "int", many=True, description="patch id(s)"),
        Filter("route", "choice", choices=Route.values, many=True),
        Filter("model_version", "int", many=True, description="model version number(s)"),
    ],
    ordering={"created_at": "created_at", "probability": "probability", "id": "id"},
    default=["-created_at"], tie_breaker="id")


class PredictionListApi(ListAPIView):
    """ML-first predictions, newest first."""

    serializer_class = PredictionOutput
    permission_classes = [has_perm("ml.view_prediction")]
    filter_backends: list = []

    @extend_schema(parameters=PREDICTION_QUERY.parameters())
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Prediction.objects.none()
        values, ordering = PREDICTION_QUERY.parse(query_params(self))
        qs = Prediction.objects.select_related("model_version")
        if values.get("patch"):
            qs = qs.filter(patch_id__in=values["patch"])
        if values.get("route"):
            qs = qs.filter(route__in=values["route"])
        if values.get("model_version"):
            qs = qs.filter(model_version__version__in=values["model_version"])
        return qs.order_by(*ordering)
