"""``/api/v1/apvs/``: the list (filters, ordering), one APV by code, and stats."""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.filters import OrderingFilter
from rest_framework.generics import ListAPIView, RetrieveAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.reviews.models import APV
from apps.reviews.selectors import apv_get, apv_list, apv_stats


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

    class Meta:
        model = APV
        fields = ["code", "project", "package", "version", "ecosystem", "manifest", "line",
                  "direct", "advisory", "aliases", "summary", "status", "severity",
                  "cvss_score", "priority", "fixed_in", "sla_due_at", "is_overdue",
                  "first_seen_at", "last_seen_at", "resolved_at", "resolution"]


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


class APVDetailApi(RetrieveAPIView):
    serializer_class = APVOutput
    lookup_url_kwarg = "code"

    def get_object(self):
        apv = apv_get(code=self.kwargs["code"])
        if apv is None:
            raise Http404
        return apv


class APVStatsApi(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("project", str)],
        responses=inline_serializer("APVStats", {
            "total": serializers.IntegerField(),
            "by_status": serializers.DictField(child=serializers.IntegerField()),
            "by_severity": serializers.DictField(child=serializers.IntegerField()),
            "overdue": serializers.IntegerField(),
        }),
    )
    def get(self, request):
        return Response(apv_stats(project=request.query_params.get("project", "")))
