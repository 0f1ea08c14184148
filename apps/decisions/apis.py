"""``POST/GET /api/v1/apvs/{code}/decisions/``, ``GET /api/v1/decisions/`` (and one by
id), ``POST /api/v1/decisions/{id}/retry/``, and the audit trail: ``GET
/api/v1/decisions/{id}/audit/`` and ``GET /api/v1/audit/``."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView, RetrieveAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.filters import Filter, ListQuery, query_params
from apps.core.permissions import has_perm
from apps.core.schema import errors
from apps.decisions.errors import DecisionNotFound
from apps.decisions.events import DecisionContext
from apps.decisions.models import Decision, DecisionAudit, DecisionType, Outcome
from apps.decisions.selectors import audit_list, decision_list
from apps.decisions.services import decision_record, decision_retry
from apps.reviews.errors import APVNotFound
from apps.reviews.models import APVStatus
from apps.reviews.selectors import apv_get

MAX_IDEMPOTENCY_KEY = 200  # Decision.idempotency_key's length

DECIDING_ROLES = ("reviewers decide APVs pending_review; only leads decide escalated APVs "
                  "and accept a risk")


class DecisionInput(serializers.Serializer):
    decision = serializers.ChoiceField(choices=DecisionType.choices)
    justification = serializers.CharField(min_length=10, max_length=10_000)
    confidence = serializers.FloatField(min_value=0, max_value=1, default=1.0)
    modifications = serializers.CharField(required=False, allow_blank=True, default="",
                                          max_length=20_000,
                                          help_text="what should change (required for modify)")
    patch_revision = serializers.IntegerField(
        required=False, allow_null=True, default=None, min_value=1,
        help_text="the revision of the APV's current patch you decide on (the detail's "
                  "current_patch.revision): required when the APV has a patch; another "
                  "revision is 409 stale_revision naming the current one")
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None,
                                           help_text="when an accepted risk expires "
                                                     "(required for accept_risk)")

    def validate(self, data):
        if data["decision"] == DecisionType.MODIFY and not data["modifications"].strip():
            raise serializers.ValidationError(
                {"modifications": "required for modify: say what should change"})
        if data["decision"] == DecisionType.ACCEPT_RISK and data["expires_at"] is None:
            raise serializers.ValidationError({"expires_at": "required for accept_risk"})
        return data


class DecisionOutput(serializers.ModelSerializer):
    apv = serializers.CharField(source="apv.code", help_text="the APV the decision was made on")
    project = serializers.CharField(source="apv.project.name")
    reviewer = serializers.CharField(source="reviewer.username")
    also_applied_to = serializers.SlugRelatedField(
        many=True, read_only=True, slug_field="code",
        help_text="the other APVs on the same patch revision this decision moved with it")
    via_shared_patch = serializers.SerializerMethodField(
        help_text="in an APV's history: true when the decision was made on another APV "
                  "(apv) and moved this one because they share the patch revision")
    outcome = serializers.ChoiceField(
        choices=Outcome.choices, read_only=True,
        help_text="applying: recorded, git/the forge act after commit; applied; "
                  "apply_failed: action_error says why (POST .../retry/ tries again)")
    status_before = serializers.ChoiceField(choices=APVStatus.choices, read_only=True)
    status_after = serializers.ChoiceField(choices=APVStatus.choices, read_only=True)

    class Meta:
        model = Decision
        fields = ["id", "apv", "project", "decision", "justification", "confidence",
                  "modifications", "patch", "patch_revision", "expires_at", "reviewer",
                  "decided_at", "outcome", "action_taken", "action_error", "status_before",
                  "status_after", "also_applied_to", "via_shared_patch", "apply_attempts",
                  "applied_at", "review_seconds"]

    def get_via_shared_patch(self, decision) -> bool:
        code = self.context.get("apv_code")
        return bool(code) and decision.apv.code != code


def _client_ip(request) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


def _apv_or_404(code: str):
    apv = apv_get(code=code)
    if apv is None:
        raise APVNotFound(f"No APV {code}.", details={"apv": code})
    return apv


class APVDecisionsApi(ListAPIView):
    """An APV's decision history, newest first (GET): the decisions made on it and those
    made on a sibling that moved it with their shared patch revision (``via_shared_patch``);
    a new decision on it (POST, ``201`` with ``Location``). A decision is recorded first
    and acted on after (``outcome`` ``applying`` → ``applied`` / ``apply_failed``; on the
    embedded profile the answer already carries the outcome)."""

    serializer_class = DecisionOutput
    queryset = Decision.objects.none()  # the model, for the schema; rows come from below
    filter_backends: list = []
    roles = {"GET": "any authenticated user", "POST": DECIDING_ROLES}

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return self.queryset
        ListQuery().parse(query_params(self))
        return decision_list(apv=[_apv_or_404(self.kwargs["code"]).code])

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "apv_code": self.kwargs.get("code")}

    @extend_schema(
        request=DecisionInput, responses={
            201: DecisionOutput, 200: DecisionOutput,
            **errors(
                _400="A field is missing or not valid (validation_error; decision_invalid, "
                     "e.g. patch_revision missing while the APV has a patch).",
                _403="The caller may not make this decision here (decision_forbidden).",
                _409="The revision is not the current one (stale_revision, "
                     "details.current_revision), or the APV was decided or moved meanwhile "
                     "(decision_conflict); idempotency_key_in_progress.",
                _422="The Idempotency-Key was used with another request "
                     "(idempotency_key_reused).",
                _503="Approve or reject need the broker, which is down "
                     "(service_unavailable).")},
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
        _apv_or_404(code)
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
                            status=status.HTTP_201_CREATED, headers={
                                "Location": request.build_absolute_uri(
                                    f"/api/v1/decisions/{result.decision.pk}/")})
        if result.replayed:
            response["Idempotent-Replayed"] = "true"
        return response


DECISION_QUERY = ListQuery(
    filters=[
        Filter("apv", many=True, description="APV code(s): the decisions that moved them, "
               "made on them or on a sibling sharing the patch revision"),
        Filter("reviewer", many=True, description="username(s)"),
        Filter("decision", "choice", choices=DecisionType.values, many=True),
        Filter("outcome", "choice", choices=Outcome.values, many=True),
        Filter("project", many=True, description="project id(s) or name(s)"),
        Filter("since", "datetime", description="ISO date or date-time (inclusive)"),
        Filter("until", "datetime", description="ISO date or date-time (exclusive)"),
    ],
    ordering={"decided_at": "decided_at", "id": "id"},
    default=["-decided_at"], tie_breaker="id")


class DecisionListApi(ListAPIView):
    """Decisions, newest first."""

    serializer_class = DecisionOutput
    filter_backends: list = []

    @extend_schema(parameters=DECISION_QUERY.parameters())
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Decision.objects.none()
        values, ordering = DECISION_QUERY.parse(query_params(self))
        return decision_list(**values).order_by(*ordering)


class DecisionDetailApi(RetrieveAPIView):
    """One decision: poll it to follow an ``applying`` decision to ``applied`` or
    ``apply_failed`` (or listen for ``decision.applied`` on the WebSocket)."""

    serializer_class = DecisionOutput

    def get_queryset(self):
        return decision_list()


class DecisionRetryApi(APIView):
    """Try a decision whose action failed (``outcome`` ``apply_failed``) again: 202 with the
    decision, now ``applying`` (or already ``applied`` on the embedded profile); 409 when
    it did not fail or its APV moved on since; 403 when the caller may not make it."""

    roles = DECIDING_ROLES + " (the decision's own rules apply again)"

    @extend_schema(request=None, responses={202: DecisionOutput, **errors(
        _409="The decision did not fail, or its APV moved on since (decision_conflict).")})
    def post(self, request, pk: int):
        record = decision_retry(decision_id=pk, user=request.user, via="api")
        return Response(DecisionOutput(record).data, status=status.HTTP_202_ACCEPTED)


# --- Audit ---------------------------------------------------------------------------------
class SnapshotPatch(serializers.Serializer):
    id = serializers.IntegerField()
    revision = serializers.IntegerField()
    strategy = serializers.CharField()
    target_version = serializers.CharField()
    branch = serializers.CharField()
    commit = serializers.CharField()
    risk_level = serializers.CharField()
    notes = serializers.ListField(child=serializers.CharField())
    diff = serializers.CharField()
    diff_truncated = serializers.BooleanField()


class SnapshotAPV(serializers.Serializer):
    code = serializers.CharField()
    status = serializers.CharField()
    priority = serializers.IntegerField()
    severity = serializers.CharField()
    cvss_score = serializers.FloatField(allow_null=True)
    package = serializers.CharField()
    version = serializers.CharField()
    manifest = serializers.CharField()
    line = serializers.IntegerField(allow_null=True)
    sla_due_at = serializers.CharField()


class SnapshotAdvisory(serializers.Serializer):
    id = serializers.CharField()
    aliases = serializers.ListField(child=serializers.CharField())
    summary = serializers.CharField()
    severity = serializers.CharField()
    cvss_score = serializers.FloatField(allow_null=True)
    cvss_vector = serializers.CharField()
    cwe_ids = serializers.ListField(child=serializers.CharField())
    modified = serializers.CharField(allow_null=True)


class Snapshot(serializers.Serializer):
    """What the reviewer was shown when deciding."""

    apv = SnapshotAPV()
    advisory = SnapshotAdvisory()
    patch = SnapshotPatch(allow_null=True)
    wargame_verdict = serializers.DictField(
        allow_null=True, help_text="the current patch's run as it concerned this APV (as "
                                   "the APV detail's wargame)")
    prediction = serializers.DictField(allow_null=True,
                                       help_text="the ML-first prediction, as the detail's")
    also_applied_to = serializers.ListField(child=serializers.CharField(), required=False)


class AuditOutput(serializers.ModelSerializer):
    decision = serializers.IntegerField(source="decision_id")
    apv = serializers.CharField(source="decision.apv.code")
    snapshot = Snapshot()

    class Meta:
        model = DecisionAudit
        fields = ["id", "decision", "apv", "reviewer_username", "recorded_at", "client_ip",
                  "user_agent", "via", "snapshot"]


AUDIT_QUERY = ListQuery(
    filters=[
        Filter("apv", many=True, description="APV code(s), siblings moved with them included"),
        Filter("decision", "int", description="a decision's id"),
        Filter("reviewer", many=True, description="username(s)"),
        Filter("via", "choice", choices=("api", "admin", "command"), many=True),
        Filter("since", "datetime", description="ISO date or date-time (inclusive)"),
        Filter("until", "datetime", description="ISO date or date-time (exclusive)"),
    ],
    ordering={"recorded_at": "recorded_at", "id": "id"},
    default=["-recorded_at"], tie_breaker="id")


class AuditListApi(ListAPIView):
    """The audit trail: who decided, when, from which address and user agent, through
    which channel, and a snapshot of what they saw."""

    serializer_class = AuditOutput
    permission_classes = [has_perm("decisions.view_decision")]
    filter_backends: list = []

    @extend_schema(parameters=AUDIT_QUERY.parameters())
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return DecisionAudit.objects.none()
        values, ordering = AUDIT_QUERY.parse(query_params(self))
        return audit_list(**values).order_by(*ordering)


class DecisionAuditApi(APIView):
    """A decision's audit record."""

    permission_classes = [has_perm("decisions.view_decision")]

    @extend_schema(responses={200: AuditOutput})
    def get(self, request, pk: int):
        record = audit_list(decision=pk).first()
        if record is None:
            raise DecisionNotFound(f"No decision {pk}.", details={"decision": pk})
        return Response(AuditOutput(record).data)
