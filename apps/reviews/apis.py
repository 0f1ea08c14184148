"""``/api/v1/apvs/``: the list (filters, ordering); ``/api/v1/patches/``. The APV detail and
the stats show what every app knows of an APV, so they live on top, in ``apps.console.apis``."""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
)
from rest_framework import serializers
from rest_framework.filters import OrderingFilter
from rest_framework.generics import ListAPIView, RetrieveAPIView
from rest_framework.permissions import DjangoModelPermissions, IsAuthenticated
from rest_framework.response import Response

from apps.reviews.models import APV, Patch, PatchStrategy
from apps.reviews.selectors import apv_get, apv_list, patch_list
from apps.reviews.services.patches import PROPOSABLE, patch_propose_upgrade, patch_submit_code


class APVOutput(serializers.ModelSerializer):
    project = serializers.CharField(source="project.name")
    package = serializers.CharField(source="dependency.name")
    version = serializers.CharField(source="dependency.version")
    ecosystem = serializers.CharField(source="dependency.ecosystem")
    manifest = serializers.CharField(source="dependency.manifest_path")
    line = serializers.IntegerField(source="dependency.line", allow_null=True)
    direct = serializers.BooleanField(source="dependency.direct")
    advisory = serializers.CharField(source="advisory.osv_id")
    aliases = serializers.ListField(source="advisory.aliases", child=serializers.CharField())
    summary = serializers.CharField(source="advisory.summary")
    is_overdue = serializers.BooleanField()
    # Exploitation evidence of the advisory (docs/apv.md "Priority"): CISA KEV and EPSS.
    kev_listed = serializers.BooleanField(source="advisory.kev_listed")
    kev_date_added = serializers.DateField(source="advisory.kev_date_added", allow_null=True)
    epss_score = serializers.FloatField(source="advisory.epss_score", allow_null=True)
    epss_percentile = serializers.FloatField(source="advisory.epss_percentile", allow_null=True)
    severity_from = serializers.CharField(
        source="advisory.severity_from",
        help_text="the advisory sharing an alias whose severity this one carries; "
                  "empty when the severity is the advisory's own")

    class Meta:
        model = APV
        fields = ["code", "project", "package", "version", "ecosystem", "manifest", "line",
                  "direct", "advisory", "aliases", "summary", "status", "severity",
                  "severity_from", "cvss_score", "priority", "fixed_in", "sla_due_at",
                  "is_overdue", "kev_listed", "kev_date_added", "epss_score",
                  "epss_percentile", "first_seen_at", "last_seen_at", "resolved_at",
                  "resolution"]


FILTERS = [
    OpenApiParameter("project", str, description="project name(s), comma-separated"),
    OpenApiParameter("status", str, description="status(es), comma-separated"),
    OpenApiParameter("severity", str, description="severity(ies), comma-separated"),
    OpenApiParameter("package", str, description="package name(s), comma-separated"),
    OpenApiParameter("advisory", str, description="OSV id or alias (CVE, GHSA)"),
    OpenApiParameter("overdue", bool, description="only (true) or no (false) overdue APVs"),
]


def _bool(value: str | None) -> bool | None:
    if value is None or value == "":
        return None
    return value.lower() in ("1", "true", "yes")


class APVListApi(ListAPIView):
    serializer_class = APVOutput
    filter_backends = [OrderingFilter]
    ordering_fields = ["priority", "sla_due_at", "first_seen_at", "cvss_score", "code"]
    ordering = ["-priority", "sla_due_at"]

    @extend_schema(parameters=FILTERS)
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        p = self.request.query_params
        return apv_list(project=p.get("project", ""), status=p.get("status", ""),
                        severity=p.get("severity", ""), package=p.get("package", ""),
                        advisory=p.get("advisory", ""), overdue=_bool(p.get("overdue")))


# --- Patches ------------------------------------------------------------------------------
class PatchOutput(serializers.ModelSerializer):
    apvs = serializers.SlugRelatedField(many=True, read_only=True, slug_field="code")
    project = serializers.CharField(source="project.name")

    class Meta:
        model = Patch
        fields = ["id", "project", "apvs", "strategy", "revision", "state", "ecosystem",
                  "package", "from_version", "target_version", "risk_level", "title", "notes",
                  "branch", "base_commit", "commit_sha", "merge_commit", "forge_pr_number",
                  "forge_pr_url", "diff", "created_at"]


class PatchInput(serializers.Serializer):
    apv = serializers.CharField(help_text="APV code")
    strategy = serializers.ChoiceField(
        choices=[PatchStrategy.CODE_PATCH, PatchStrategy.DEPENDENCY_UPGRADE])
    diff = serializers.CharField(required=False, allow_blank=True, default="",
                                 max_length=2_000_000, trim_whitespace=False)
    title = serializers.CharField(required=False, allow_blank=True, default="", max_length=300)
    target_version = serializers.CharField(required=False, allow_blank=True, default="",
                                           max_length=200)

    def validate(self, data):
        if data["strategy"] == PatchStrategy.CODE_PATCH and not data["diff"].strip():
            raise serializers.ValidationError({"diff": "required for a code_patch"})
        return data


class CanProposePatch(DjangoModelPermissions):
    perms_map = {**DjangoModelPermissions.perms_map, "GET": []}


class PatchListApi(ListAPIView):
    """Patches (filter by apv, project, state, strategy); POST submits a new revision."""

    serializer_class = PatchOutput
    permission_classes = [IsAuthenticated, CanProposePatch]
    queryset = Patch.objects.none()  # for the permission class's model lookup

    @extend_schema(parameters=[OpenApiParameter("apv", str), OpenApiParameter("project", str),
                               OpenApiParameter("state", str), OpenApiParameter("strategy", str)])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        p = self.request.query_params
        return patch_list(apv=p.get("apv", ""), project=p.get("project", ""),
                          state=p.get("state", ""), strategy=p.get("strategy", ""))

    @extend_schema(request=PatchInput, responses={201: PatchOutput})
    def post(self, request):
        data = PatchInput(data=request.data)
        data.is_valid(raise_exception=True)
        apv = apv_get(code=data.validated_data["apv"])
        if apv is None:
            raise Http404
        if data.validated_data["strategy"] == PatchStrategy.CODE_PATCH:
            patch = patch_submit_code(apv=apv, diff=data.validated_data["diff"],
                                      title=data.validated_data["title"],
                                      created_by=request.user)
        else:
            patch = patch_propose_upgrade(
                apvs=list(apv_list(project=apv.project.name,
                                   package=apv.dependency.normalised_name)
                          .filter(status__in=PROPOSABLE)) or [apv],
                target_version=data.validated_data["target_version"] or None,
                created_by=request.user)
        return Response(PatchOutput(patch).data, status=201)


class PatchDetailApi(RetrieveAPIView):
    serializer_class = PatchOutput

    def get_queryset(self):
        return patch_list()
