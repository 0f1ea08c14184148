"""``/api/v1/projects/``: list, create (leads), detail, and ``POST …/{id}/scan/``."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView, RetrieveAPIView
from rest_framework.permissions import DjangoModelPermissions, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.inventory.models import Project
from apps.inventory.services import project_add, project_scan


class ProjectOutput(serializers.ModelSerializer):
    class Meta:
        model = Project
        fields = ["id", "name", "path", "default_branch", "description", "last_scanned_at",
                  "last_scanned_commit", "last_scan_errors", "last_scan_status",
                  "last_scan_attempted_at", "created_at"]


class ProjectInput(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    path = serializers.CharField(max_length=1000)
    default_branch = serializers.CharField(max_length=200, default="main")
    description = serializers.CharField(required=False, allow_blank=True, default="")


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
    serializer_class = ProjectOutput
    queryset = Project.objects.all()


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
        }),
    )
    def post(self, request, pk: int):
        project = get_object_or_404(Project, pk=pk)
        result = project_scan(project=project)
        return Response({
            "project": project.name, "commit": result.commit, "manifests": result.manifests,
            "dependencies": result.dependencies, "pinned": result.pinned,
            "errors": result.errors, "status": result.status,
            "apvs": {"created": len(result.apvs.created), "updated": len(result.apvs.updated),
                     "unchanged": len(result.apvs.unchanged),
                     "resolved": len(result.apvs.resolved)},
        })
