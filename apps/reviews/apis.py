"""``/api/v1/apvs/``: the list (filters, ordering); ``/api/v1/patches/`` and
``/api/v1/apvs/{code}/patches/``; a project's SARIF and CycloneDX reports. The APV detail
and the stats show what every app knows of an APV, so they live on top, in
``apps.console.apis``."""

from __future__ import annotations

import json

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.generics import ListAPIView, RetrieveAPIView
from rest_framework.permissions import DjangoModelPermissions, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.advisories.models import Severity
from apps.core.filters import Filter, ListQuery, query_params
from apps.core.schema import errors
from apps.inventory.selectors import project_get
from apps.reviews.errors import APVNotFound
from apps.reviews.models import APV, APVStatus, Patch, PatchState, PatchStrategy
from apps.reviews.patching.branches import branch_exists, branches_present
from apps.reviews.selectors import apv_get, apv_list, findings_for_project, patch_list
from apps.reviews.services.patches import patch_propose


def apv_or_404(code: str) -> APV:
    """The APV with this code; ``not_found`` (404) naming it, on GET and POST alike."""
    apv = apv_get(code=code)
    if apv is None:
        raise APVNotFound(f"No APV {code}.", details={"apv": code})
    return apv


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
    fixed_in = serializers.ListField(child=serializers.CharField(),
                                     help_text="fixed versions, lowest first")
    # Exploitation evidence of the advisory (docs/apv.md "Priority"): CISA KEV and EPSS.
    kev_listed = serializers.BooleanField(source="advisory.kev_listed")
    kev_date_added = serializers.DateField(source="advisory.kev_date_added", allow_null=True)
    epss_score = serializers.FloatField(source="advisory.epss_score", allow_null=True)
    epss_percentile = serializers.FloatField(source="advisory.epss_percentile", allow_null=True)
    severity_from = serializers.CharField(
        source="advisory.severity_from",
        help_text="the advisory sharing an alias whose severity this one carries, or the "
                  "CVE whose NVD record scored it (cvss_source 'nvd'); empty when the "
                  "severity is the advisory's own")
    # Where the CVSS comes from (docs/nvd.md): the advisory's OSV data, or NVD's record.
    cvss_vector = serializers.CharField(source="advisory.cvss_vector")
    cvss_source = serializers.CharField(
        source="advisory.cvss_source",
        help_text="'nvd' when score, vector and severity are NVD's; empty when from OSV")
    nvd_metric_source = serializers.CharField(
        source="advisory.nvd_metric_source",
        help_text="who scored it at NVD (nvd@nist.gov, a CNA); empty unless from NVD")
    nvd_metric_type = serializers.CharField(
        source="advisory.nvd_metric_type",
        help_text="NVD's 'Primary' or 'Secondary' metric; empty unless from NVD")

    class Meta:
        model = APV
        fields = ["code", "project", "package", "version", "ecosystem", "manifest", "line",
                  "direct", "advisory", "aliases", "summary", "status", "severity",
                  "severity_from", "cvss_score", "cvss_vector", "cvss_source",
                  "nvd_metric_source", "nvd_metric_type", "priority", "fixed_in", "sla_due_at",
                  "is_overdue", "kev_listed", "kev_date_added", "epss_score",
                  "epss_percentile", "first_seen_at", "last_seen_at", "resolved_at",
                  "resolution"]


APV_QUERY = ListQuery(
    filters=[
        Filter("project", many=True, description="project id(s) or name(s)"),
        Filter("status", "choice", choices=APVStatus.values, many=True),
        Filter("severity", "choice", choices=Severity.values, many=True),
        Filter("package", many=True, description="package name(s)"),
        Filter("advisory", description="OSV id or alias (CVE, GHSA)"),
        Filter("overdue", "bool", description="only (true) or no (false) overdue APVs"),
    ],
    ordering={"priority": "priority", "sla_due_at": "sla_due_at",
              "first_seen_at": "first_seen_at", "last_seen_at": "last_seen_at",
              "cvss_score": "cvss_score", "epss_score": "advisory__epss_score",
              "code": "code"},
    default=["-priority", "sla_due_at"], tie_breaker="code")


class APVListApi(ListAPIView):
    """APVs, the most urgent first (priority, then the SLA due date)."""

    serializer_class = APVOutput
    filter_backends: list = []

    @extend_schema(parameters=APV_QUERY.parameters())
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return APV.objects.none()
        values, ordering = APV_QUERY.parse(query_params(self))
        return apv_list(project=values.get("project", []), status=values.get("status", []),
                        severity=values.get("severity", []),
                        package=values.get("package", []),
                        advisory=values.get("advisory", ""),
                        overdue=values.get("overdue")).order_by(*ordering)


# --- Patches ------------------------------------------------------------------------------
class PatchOutput(serializers.ModelSerializer):
    apvs = serializers.SlugRelatedField(many=True, read_only=True, slug_field="code",
                                        help_text="codes of the APVs this revision covers")
    project = serializers.CharField(source="project.name")
    notes = serializers.ListField(child=serializers.CharField(), read_only=True,
                                  help_text="for the reviewer")
    branch_exists = serializers.SerializerMethodField(
        help_text="whether the branch is still in the project's repository (false once a "
                  "rejection deleted it); null when the repository cannot be read")

    class Meta:
        model = Patch
        fields = ["id", "project", "apvs", "strategy", "revision", "state", "ecosystem",
                  "package", "from_version", "target_version", "risk_level", "title", "notes",
                  "branch", "branch_exists", "base_commit", "commit_sha", "merge_commit",
                  "forge_pr_number", "forge_pr_url", "diff", "created_at"]

    def get_branch_exists(self, patch) -> bool | None:
        if not patch.branch:
            return False
        if not patch.branch.startswith("immune/"):
            return branch_exists(patch.project.path, patch.branch)
        # One git call per project for a whole page (the context is the page's).
        known = self.context.setdefault("_branches", {})
        if patch.project.path not in known:
            known[patch.project.path] = branches_present(patch.project.path)
        present = known[patch.project.path]
        return None if present is None else patch.branch in present


class APVPatchInput(serializers.Serializer):
    strategy = serializers.ChoiceField(
        choices=[PatchStrategy.CODE_PATCH, PatchStrategy.DEPENDENCY_UPGRADE],
        default=PatchStrategy.DEPENDENCY_UPGRADE)
    diff = serializers.CharField(required=False, allow_blank=True, default="",
                                 max_length=2_000_000, trim_whitespace=False,
                                 help_text="the unified diff of a code_patch")
    title = serializers.CharField(required=False, allow_blank=True, default="", max_length=300)
    target_version = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=200,
        help_text="for a dependency_upgrade: the version to move to (a version of the "
                  "package's ecosystem above the pinned one; a release in the package index "
                  "when PACKAGE_INDEX_URL is set). Empty: the smallest version no known "
                  "advisory affects.")

    def validate(self, data):
        if data["strategy"] == PatchStrategy.CODE_PATCH and not data["diff"].strip():
            raise serializers.ValidationError({"diff": "required for a code_patch"})
        return data


class PatchInput(APVPatchInput):
    apv = serializers.CharField(help_text="APV code", max_length=32)
    strategy = serializers.ChoiceField(
        choices=[PatchStrategy.CODE_PATCH, PatchStrategy.DEPENDENCY_UPGRADE])


class CanProposePatch(DjangoModelPermissions):
    perms_map = {**DjangoModelPermissions.perms_map, "GET": []}


PATCH_QUERY = ListQuery(
    filters=[
        Filter("apv", many=True, description="code(s) of APVs the patch covers"),
        Filter("project", many=True, description="project id(s) or name(s)"),
        Filter("state", "choice", choices=PatchState.values, many=True),
        Filter("strategy", "choice", choices=PatchStrategy.values, many=True),
    ],
    ordering={"created_at": "created_at", "revision": "revision", "id": "id"},
    default=["-created_at"], tie_breaker="id")

_PROPOSE_ERRORS = errors(
    _400="The target version is not a version, not above the pin, or not a release in "
         "the package index (patch_invalid, details.target_version); the diff does not "
         "apply (patch_invalid, details.diff).",
    _409="The APV is not open, changes_requested or pending_review, or changed while the "
         "patch was made (patch_conflict).",
    _404="No such APV (not_found).")


def _proposed(request, patch: Patch) -> Response:
    return Response(PatchOutput(patch).data, status=201, headers={
        "Location": request.build_absolute_uri(f"/api/v1/patches/{patch.pk}/")})


class PatchListApi(ListAPIView):
    """Patches, newest first (GET); a new revision (POST, ``201`` with ``Location``): a
    ``dependency_upgrade`` covers every APV of the package in the project that can take
    one, including those sharing the APV's current revision; a ``code_patch`` is the APV's
    own."""

    serializer_class = PatchOutput
    permission_classes = [IsAuthenticated, CanProposePatch]
    queryset = Patch.objects.none()  # for the permission class's model lookup
    filter_backends: list = []

    @extend_schema(parameters=PATCH_QUERY.parameters())
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Patch.objects.none()
        values, ordering = PATCH_QUERY.parse(query_params(self))
        return patch_list(**values).order_by(*ordering)

    @extend_schema(request=PatchInput, responses={201: PatchOutput, **_PROPOSE_ERRORS})
    def post(self, request):
        data = PatchInput(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        apv = apv_or_404(fields.pop("apv"))
        return _proposed(request, patch_propose(apv=apv, created_by=request.user, **fields))


class APVPatchesApi(ListAPIView):
    """An APV's patch revisions, newest first (GET); a new revision for it (POST, as
    ``POST /patches/``; ``strategy`` defaults to ``dependency_upgrade``)."""

    serializer_class = PatchOutput
    permission_classes = [IsAuthenticated, CanProposePatch]
    queryset = Patch.objects.none()
    filter_backends: list = []

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Patch.objects.none()
        ListQuery().parse(query_params(self))
        return patch_list(apv=[apv_or_404(self.kwargs["code"]).code])

    @extend_schema(request=APVPatchInput, responses={201: PatchOutput, **_PROPOSE_ERRORS})
    def post(self, request, code: str):
        apv = apv_or_404(code)
        data = APVPatchInput(data=request.data)
        data.is_valid(raise_exception=True)
        return _proposed(request, patch_propose(apv=apv, created_by=request.user,
                                                **data.validated_data))


class PatchDetailApi(RetrieveAPIView):
    """One patch revision."""

    serializer_class = PatchOutput

    def get_queryset(self):
        return patch_list()


# --- Reports ------------------------------------------------------------------------------
REPORT_QUERY = ListQuery(filters=[Filter(
    "include_resolved", "bool", description="also list resolved APVs (default false)")])
VERSION = "immune 0.1.0"
PROJECT_PATH = OpenApiParameter("project", str, OpenApiParameter.PATH,
                                description="the project's id or name")


class _ReportApi(APIView):
    """A project's open APVs as a report, as ``manage.py scan_project`` writes it (without
    scanning again: the last scan's findings)."""

    media_type = ""
    filename = ""

    def render(self, project, findings) -> str:
        raise NotImplementedError

    def get(self, request, project: str):
        values, _ = REPORT_QUERY.parse(query_params(self))
        project = project_get(ref=project)
        findings = findings_for_project(project_name=project.name,
                                        include_resolved=values.get("include_resolved", False))
        response = HttpResponse(self.render(project, findings), content_type=self.media_type)
        response["Content-Disposition"] = (
            f'inline; filename="{project.name}-{self.filename}"')
        return response


@extend_schema(parameters=[PROJECT_PATH, *REPORT_QUERY.parameters()],
               responses={(200, "application/sarif+json"): OpenApiTypes.OBJECT})
class ProjectSarifApi(_ReportApi):
    """SARIF 2.1.0 (``application/sarif+json``): one rule per advisory, one result per
    APV, for code-scanning dashboards."""

    media_type = "application/sarif+json"
    filename = "report.sarif"

    def render(self, project, findings) -> str:
        from apps.inventory.reports import findings_to_sarif

        return json.dumps(findings_to_sarif(
            findings, tool_version=VERSION, project_name=project.name,
            commit=project.last_scanned_commit or ""), indent=2)


@extend_schema(parameters=[PROJECT_PATH, *REPORT_QUERY.parameters()],
               responses={(200, "application/vnd.cyclonedx+json"): OpenApiTypes.OBJECT})
class ProjectCycloneDxApi(_ReportApi):
    """CycloneDX 1.6 VEX (``application/vnd.cyclonedx+json``): the affected components
    and one vulnerability per advisory with its analysis state."""

    media_type = "application/vnd.cyclonedx+json"
    filename = "report.cdx.json"

    def render(self, project, findings) -> str:
        from apps.inventory.reports import findings_to_cyclonedx_vex

        return findings_to_cyclonedx_vex(findings, project_name=project.name,
                                         tool_version=VERSION)
