"""``/api/v1/projects/``: list, create (leads), detail, update (``PATCH``, leads), and
``POST …/{project}/scan/``. A project is addressed by id or by name in paths, as in the
``project`` filters of the other lists."""

from __future__ import annotations

from django.db.models import Q
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView, RetrieveAPIView
from rest_framework.permissions import DjangoModelPermissions, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.filters import Filter, ListQuery, query_params
from apps.core.schema import errors
from apps.inventory.manifests.globs import MAX_PATTERN_CHARS, MAX_PATTERNS
from apps.inventory.models import Project, ScanStatus
from apps.inventory.selectors import project_get
from apps.inventory.services import project_add, project_scan, project_update


class ScanErrorOutput(serializers.Serializer):
    manifest = serializers.CharField(required=False)
    line = serializers.IntegerField(required=False, allow_null=True)
    reason = serializers.CharField()
    stage = serializers.CharField(required=False,
                                  help_text="repository, tree or manifest")


class ProjectOutput(serializers.ModelSerializer):
    last_scan_errors = ScanErrorOutput(many=True, read_only=True,
                                       help_text="what the last scan attempt could not read")
    last_scan_status = serializers.ChoiceField(choices=[("", ""), *ScanStatus.choices],
                                               read_only=True)
    manifest_include = serializers.ListField(
        child=serializers.CharField(), read_only=True,
        help_text="read only manifests matching one of these globs (empty: all)")
    manifest_exclude = serializers.ListField(
        child=serializers.CharField(), read_only=True,
        help_text="never read manifests matching one of these globs, e.g. tests/**")

    class Meta:
        model = Project
        fields = ["id", "name", "path", "default_branch", "description", "last_scanned_at",
                  "last_scanned_commit", "last_scan_errors", "last_scan_status",
                  "last_scan_attempted_at", "manifest_include", "manifest_exclude",
                  "created_at"]


def _globs(help_text: str) -> serializers.ListField:
    """A list of glob patterns; the service validates them (``..``, length, count)."""
    return serializers.ListField(
        child=serializers.CharField(max_length=MAX_PATTERN_CHARS, allow_blank=True,
                                    trim_whitespace=True),
        required=False, max_length=MAX_PATTERNS, help_text=help_text)


_INCLUDE_HELP = ("glob patterns on manifest paths relative to the repository root; when set, "
                 "only matching manifests are read (** spans folders)")
_EXCLUDE_HELP = "glob patterns of manifests never read, e.g. tests/**"


class ProjectInput(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    path = serializers.CharField(max_length=1000)
    default_branch = serializers.CharField(max_length=200, default="main")
    description = serializers.CharField(required=False, allow_blank=True, default="")
    manifest_include = _globs(_INCLUDE_HELP)
    manifest_exclude = _globs(_EXCLUDE_HELP)


class ProjectUpdateInput(serializers.Serializer):
    description = serializers.CharField(required=False, allow_blank=True)
    manifest_include = _globs(_INCLUDE_HELP)
    manifest_exclude = _globs(_EXCLUDE_HELP)


PROJECT_QUERY = ListQuery(
    filters=[Filter("search", description="words of the name or description")],
    ordering={"name": "name", "created_at": "created_at", "last_scanned_at": "last_scanned_at",
              "id": "id"},
    default=["name"], tie_breaker="id")


def project_location(request, project: Project) -> str:
    return request.build_absolute_uri(f"/api/v1/projects/{project.pk}/")


class ProjectListApi(ListAPIView):
    """Projects (GET); a new project (POST: ``201`` with ``Location``)."""

    serializer_class = ProjectOutput
    permission_classes = [IsAuthenticated, DjangoModelPermissions]
    queryset = Project.objects.all()
    filter_backends: list = []

    @extend_schema(parameters=PROJECT_QUERY.parameters())
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        values, ordering = PROJECT_QUERY.parse(query_params(self))
        qs = Project.objects.all()
        for word in values.get("search", "").split():
            qs = qs.filter(Q(name__icontains=word) | Q(description__icontains=word))
        return qs.order_by(*ordering)

    @extend_schema(request=ProjectInput, responses={201: ProjectOutput})
    def post(self, request):
        data = ProjectInput(data=request.data)
        data.is_valid(raise_exception=True)
        project = project_add(**data.validated_data, created_by=request.user)
        return Response(ProjectOutput(project).data, status=status.HTTP_201_CREATED,
                        headers={"Location": project_location(request, project)})


PROJECT_PATH = OpenApiParameter("project", str, OpenApiParameter.PATH,
                                description="the project's id or name")


@extend_schema(parameters=[PROJECT_PATH])
class ProjectDetailApi(RetrieveAPIView):
    """A project (GET); ``PATCH`` changes its description and manifest include/exclude
    patterns."""

    serializer_class = ProjectOutput
    permission_classes = [IsAuthenticated, DjangoModelPermissions]
    queryset = Project.objects.all()

    def get_object(self):
        return project_get(ref=self.kwargs["project"])

    @extend_schema(request=ProjectUpdateInput, responses={200: ProjectOutput})
    def patch(self, request, project: str):
        project = project_get(ref=project)
        data = ProjectUpdateInput(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        project = project_update(project=project, **data.validated_data)
        return Response(ProjectOutput(project).data)


class CanScan(DjangoModelPermissions):
    """A scan writes dependencies and APVs: it needs ``inventory.change_project``."""

    perms_map = {**DjangoModelPermissions.perms_map,
                 "POST": ["%(app_label)s.change_%(model_name)s"]}


class ProjectScanApi(APIView):
    """Scan now. Files, tree entries and lines the scan could not read are in ``errors``
    (``status`` "partial"); when nothing could be read the answer is 422 ``scan_failed``
    with the same errors in ``details.errors``. Either way they are kept on the project."""

    permission_classes = [IsAuthenticated, CanScan]
    queryset = Project.objects.all()

    @extend_schema(
        request=None, parameters=[PROJECT_PATH],
        responses={200: inline_serializer("ScanOutput", {
            "project": serializers.CharField(), "commit": serializers.CharField(),
            "manifests": serializers.ListField(child=serializers.CharField()),
            "dependencies": serializers.IntegerField(), "pinned": serializers.IntegerField(),
            "errors": ScanErrorOutput(many=True),
            "apvs": serializers.DictField(child=serializers.IntegerField()),
            "status": serializers.ChoiceField(choices=["ok", "partial"]),
            "excluded": serializers.IntegerField(
                help_text="manifests left out by the project's include/exclude patterns"),
            "excluded_manifests": serializers.ListField(child=serializers.CharField()),
        }), **errors(_422="Nothing could be read (scan_failed; details.errors).")},
    )
    def post(self, request, project: str):
        project = project_get(ref=project)
        result = project_scan(project=project)
        return Response({
            "project": project.name, "commit": result.commit, "manifests": result.manifests,
            "dependencies": result.dependencies, "pinned": result.pinned,
            "errors": result.errors, "status": result.status,
            "excluded": len(result.excluded), "excluded_manifests": result.excluded[:1000],
            "apvs": {"created": len(result.apvs.created), "updated": len(result.apvs.updated),
                     "unchanged": len(result.apvs.unchanged),
                     "resolved": len(result.apvs.resolved)},
        })
