"""``/api/v1/advisories/``: list (filter by package, ecosystem, severity, alias; search), detail."""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.generics import ListAPIView, RetrieveAPIView

from apps.advisories.models import Advisory, AffectedPackage
from apps.advisories.selectors import advisory_get, advisory_list


class AffectedOutput(serializers.ModelSerializer):
    class Meta:
        model = AffectedPackage
        fields = ["ecosystem", "name", "normalised_name", "purl", "ranges", "versions",
                  "fixed_versions"]


class AdvisoryOutput(serializers.ModelSerializer):
    id = serializers.CharField(source="osv_id")
    affected = AffectedOutput(source="affected_packages", many=True)

    class Meta:
        model = Advisory
        fields = ["id", "aliases", "summary", "severity", "cvss_score", "cvss_vector", "cwe_ids",
                  "published", "modified", "withdrawn", "source", "affected"]


class AdvisoryDetailOutput(AdvisoryOutput):
    class Meta(AdvisoryOutput.Meta):
        fields = [*AdvisoryOutput.Meta.fields, "details", "references", "severity_vectors",
                  "raw"]


FILTERS = [
    OpenApiParameter("package", str, description="package name (PEP 503 normalised)"),
    OpenApiParameter("ecosystem", str, description="e.g. PyPI, npm"),
    OpenApiParameter("severity", str, description="comma-separated severities"),
    OpenApiParameter("alias", str, description="a CVE or GHSA id"),
    OpenApiParameter("search", str, description="id, alias, package or words of the summary"),
    OpenApiParameter("withdrawn", bool, description="include withdrawn advisories (default yes)"),
]


class AdvisoryListApi(ListAPIView):
    serializer_class = AdvisoryOutput
    filter_backends: list = []  # filtering is the selector's job, driven by FILTERS

    @extend_schema(parameters=FILTERS)
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        params = self.request.query_params
        return advisory_list(
            package=params.get("package", ""), ecosystem=params.get("ecosystem", ""),
            severity=params.get("severity", ""), alias=params.get("alias", ""),
            search=params.get("search", ""),
            include_withdrawn=params.get("withdrawn", "true").lower() not in ("0", "false", "no"),
        ).order_by("-modified", "osv_id")


class AdvisoryDetailApi(RetrieveAPIView):
    serializer_class = AdvisoryDetailOutput
    lookup_url_kwarg = "osv_id"

    def get_object(self):
        advisory = advisory_get(osv_id=self.kwargs["osv_id"])
        if advisory is None:
            raise Http404
        return advisory
