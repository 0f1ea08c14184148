"""``/api/v1/projects/``: list, create (leads), detail, update (``PATCH``, leads), and
``POST …/{id}/scan/``."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView, RetrieveAPIView
from rest_framework.permissions import DjangoModelPermissions, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.inventory.manifests.globs import MAX_PATTERN_CHARS, MAX_PATTERNS
from apps.inventory.models import Project
from apps.inventory.services import project_add, project_scan, project_update


class ProjectOutput(serializers.ModelSerializer):
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


class ProjectListApi(ListAPIView):
    """Everyone authenticated may list; creating needs ``inventory.add_project`` (leads)."""

    serializer_class = ProjectOutput
    permission_classes = [IsAuthenticated, DjangoModelPermissions]
    queryset = Project.objects.order_by("name")
    search_fields = ["name", "description"]
    ordering_fields = ["name", "last_scanned_at", "created_at"]

    @extend_schema(request=ProjectInput, responses={201: ProjectOutput})
    def post(self, request):
        data = ProjectInput(data=request.data)
        data.is_valid(raise_exception=True)
        project = project_add(**data.validated_data, created_by=request.user)
        return Response(ProjectOutput(project).data, status=status.HTTP_201_CREATED)


class ProjectDetailApi(RetrieveAPIView):
    """Everyone authenticated may read; ``PATCH`` (description, manifest include/exclude
    patterns) needs ``inventory.change_project`` (leads)."""

    serializer_class = ProjectOutput
    permission_classes = [IsAuthenticated, DjangoModelPermissions]
    queryset = Project.objects.all()

    @extend_schema(request=ProjectUpdateInput, responses={200: ProjectOutput})
    def patch(self, request, pk: int):
        project = get_object_or_404(Project, pk=pk)
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
        request=None,
        responses=inline_serializer("ScanOutput", {
            "project": serializers.CharField(), "commit": serializers.CharField(),
            "manifests": serializers.ListField(child=serializers.CharField()),
            "dependencies": serializers.IntegerField(), "pinned": serializers.IntegerField(),
            "errors": serializers.ListField(child=serializers.DictField()),
            "apvs": serializers.DictField(child=serializers.IntegerField()),
            "status": serializers.ChoiceField(choices=["ok", "partial"]),
            "excluded": serializers.IntegerField(
                help_text="manifests left out by the project's include/exclude patterns"),
            "excluded_manifests": serializers.ListField(child=serializers.CharField()),
        }),
    )
    def post(self, request, pk: int):
        project = get_object_or_404(Project, pk=pk)
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
