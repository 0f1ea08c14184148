"""``POST/GET /api/v1/apvs/{code}/decisions/``, ``GET /api/v1/decisions/`` and
``POST /api/v1/decisions/{id}/retry/``."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.decisions.events import DecisionContext
from apps.decisions.models import Decision, DecisionType, Outcome
from apps.decisions.selectors import decision_list
from apps.decisions.services import decision_record, decision_retry

MAX_IDEMPOTENCY_KEY = 200  # Decision.idempotency_key's length


class DecisionInput(serializers.Serializer):
    decision = serializers.ChoiceField(choices=DecisionType.choices)
    justification = serializers.CharField(min_length=10, max_length=10_000)
    confidence = serializers.FloatField(min_value=0, max_value=1, default=1.0)
    modifications = serializers.CharField(required=False, allow_blank=True, default="",
                                          max_length=20_000)
    patch_revision = serializers.IntegerField(required=False, allow_null=True, default=None,
                                              min_value=1)
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)

    def validate(self, data):
        if data["decision"] == DecisionType.MODIFY and not data["modifications"].strip():
            raise serializers.ValidationError(
                {"modifications": "required for modify: say what should change"})
        if data["decision"] == DecisionType.ACCEPT_RISK and data["expires_at"] is None:
            raise serializers.ValidationError({"expires_at": "required for accept_risk"})
        return data


class DecisionOutput(serializers.ModelSerializer):
    apv = serializers.CharField(source="apv.code")
    project = serializers.CharField(source="apv.project.name")
    reviewer = serializers.CharField(source="reviewer.username")
    also_applied_to = serializers.SlugRelatedField(
        many=True, read_only=True, slug_field="code",
        help_text="the other APVs on the same patch revision this decision moved with it")
    outcome = serializers.ChoiceField(
        choices=Outcome.choices, read_only=True,
        help_text="applying: recorded, git/the forge act after commit; applied; "
                  "apply_failed: action_error says why (POST .../retry/ tries again)")

    class Meta:
        model = Decision
        fields = ["id", "apv", "project", "decision", "justification", "confidence",
                  "modifications", "patch_revision", "expires_at", "reviewer", "decided_at",
                  "outcome", "action_taken", "action_error", "status_before", "status_after",
                  "also_applied_to", "apply_attempts", "applied_at", "review_seconds"]


def _client_ip(request) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


class APVDecisionsApi(ListAPIView):
    """An APV's decision history (GET) and a new decision (POST)."""

    serializer_class = DecisionOutput
    queryset = Decision.objects.none()  # the model, for the schema; rows come from below

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return self.queryset
        return decision_list(apv_code=self.kwargs["code"])

    @extend_schema(
        request=DecisionInput, responses={201: DecisionOutput, 200: DecisionOutput},
        parameters=[OpenApiParameter(
            "Idempotency-Key", str, OpenApiParameter.HEADER,
            description="at most 200 characters, per reviewer: requests with the same key "
                        "and body decide once; the others (also concurrent ones, which wait "
                        "for the first) get its response with Idempotent-Replayed: true. The "
                        "same key with another body or APV is 422 idempotency_key_reused.")],
    )
    def post(self, request, code: str):
        key = request.headers.get("Idempotency-Key", "").strip()
        if len(key) > MAX_IDEMPOTENCY_KEY:
            # Cut short, two keys would become one: refused instead.
            raise serializers.ValidationError(
                {"Idempotency-Key": f"at most {MAX_IDEMPOTENCY_KEY} characters"})
        data = DecisionInput(data=request.data)
        data.is_valid(raise_exception=True)
        result = decision_record(
            apv_code=code, reviewer=request.user, **data.validated_data,
            idempotency_key=key or None,
            context=DecisionContext(client_ip=_client_ip(request),
                                    user_agent=request.headers.get("User-Agent", ""),
                                    via="api"),
        )
        response = Response(DecisionOutput(result.decision).data,
                            status=status.HTTP_201_CREATED)
        if result.replayed:
            response["Idempotent-Replayed"] = "true"
        return response


class DecisionListApi(ListAPIView):
    serializer_class = DecisionOutput

    @extend_schema(parameters=[
        OpenApiParameter("reviewer", str, description="username(s), comma-separated"),
        OpenApiParameter("decision", str, description="decision type(s), comma-separated"),
        OpenApiParameter("project", str),
        OpenApiParameter("since", str, description="ISO date or datetime (inclusive)"),
        OpenApiParameter("until", str, description="ISO date or datetime (exclusive)"),
    ])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        p = self.request.query_params
        field = serializers.DateTimeField()
        bounds = {}
        for name in ("since", "until"):
            if p.get(name):
                value = p[name] if "T" in p[name] else f"{p[name]}T00:00:00Z"
                try:
                    bounds[name] = field.to_internal_value(value)
                except serializers.ValidationError as exc:
                    raise serializers.ValidationError({name: exc.detail}) from exc
        return decision_list(reviewer=p.get("reviewer", ""), decision=p.get("decision", ""),
                             project=p.get("project", ""), **bounds)


class DecisionRetryApi(APIView):
    """Try a decision whose action failed (``outcome`` ``apply_failed``) again: 202 with the
    decision, now ``applying`` (or already ``applied`` on the embedded profile); 409 when
    it did not fail or its APV moved on since; 403 when the caller may not make it."""

    @extend_schema(request=None, responses={202: DecisionOutput})
    def post(self, request, pk: int):
        record = decision_retry(decision_id=pk, user=request.user, via="api")
        return Response(DecisionOutput(record).data, status=status.HTTP_202_ACCEPTED)

