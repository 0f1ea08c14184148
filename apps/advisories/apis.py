"""``/api/v1/advisories/``: list (filter by package, ecosystem, severity, alias; search), detail."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.generics import ListAPIView, RetrieveAPIView

from apps.advisories.models import Advisory, AffectedPackage, Severity
from apps.advisories.selectors import advisory_get, advisory_list
from apps.core.errors import NotFoundError
from apps.core.filters import Filter, ListQuery, query_params


class RangeEventOutput(serializers.Serializer):
    introduced = serializers.CharField(required=False)
    fixed = serializers.CharField(required=False)
    last_affected = serializers.CharField(required=False)
    limit = serializers.CharField(required=False)


class RangeOutput(serializers.Serializer):
    """An OSV range (https://ossf.github.io/osv-schema/#affectedranges-field)."""

    type = serializers.CharField(help_text="ECOSYSTEM, SEMVER or GIT")
    events = RangeEventOutput(many=True)
    repo = serializers.CharField(required=False, help_text="for GIT ranges")
    unparseable = serializers.CharField(
        required=False, help_text="why the range cannot be ordered (it decides no match)")


class AffectedOutput(serializers.ModelSerializer):
    ranges = RangeOutput(many=True, read_only=True)
    versions = serializers.ListField(child=serializers.CharField(), read_only=True,
                                     help_text="explicitly affected versions")
    fixed_versions = serializers.ListField(child=serializers.CharField(), read_only=True)

    class Meta:
        model = AffectedPackage
        fields = ["ecosystem", "name", "normalised_name", "purl", "ranges", "versions",
                  "fixed_versions"]


class ReferenceOutput(serializers.Serializer):
    type = serializers.CharField(required=False)
    url = serializers.CharField(required=False)


class SeverityVectorOutput(serializers.Serializer):
    type = serializers.CharField(help_text="CVSS_V2, CVSS_V3, CVSS_V4 or another scheme")
    vector = serializers.CharField()
    base_score = serializers.FloatField(allow_null=True,
                                        help_text="computed from the vector (CVSS)")


class AdvisoryOutput(serializers.ModelSerializer):
    id = serializers.CharField(source="osv_id")
    affected = AffectedOutput(source="affected_packages", many=True)
    aliases = serializers.ListField(child=serializers.CharField(),
                                    help_text="CVE, GHSA and other ids")
    cwe_ids = serializers.ListField(child=serializers.CharField())

    class Meta:
        model = Advisory
        fields = ["id", "aliases", "summary", "severity", "cvss_score", "cvss_vector",
                  "severity_from", "cvss_source", "nvd_metric_source", "nvd_metric_type",
                  "cwe_ids", "published", "modified", "withdrawn", "source", "affected"]


class AdvisoryDetailOutput(AdvisoryOutput):
    references = ReferenceOutput(many=True, read_only=True)
    severity_vectors = SeverityVectorOutput(many=True, read_only=True)
    raw = serializers.DictField(help_text="the OSV record as imported")

    class Meta(AdvisoryOutput.Meta):
        fields = [*AdvisoryOutput.Meta.fields, "details", "references", "severity_vectors",
                  "raw"]


ADVISORY_QUERY = ListQuery(
    filters=[
        Filter("package", description="package name (PEP 503 normalised)"),
        Filter("ecosystem", description="e.g. PyPI, npm"),
        Filter("severity", "choice", choices=Severity.values, many=True),
        Filter("alias", description="a CVE or GHSA id"),
        Filter("search", description="id, alias, package or words of the summary"),
        Filter("withdrawn", "bool", description="include withdrawn advisories (default true)"),
    ],
    ordering={"modified": "modified", "published": "published", "cvss_score": "cvss_score",
              "id": "osv_id"},
    default=["-modified"], tie_breaker="id")


class AdvisoryListApi(ListAPIView):
    """Advisories, the most recently modified first."""

    serializer_class = AdvisoryOutput
    filter_backends: list = []  # filtering is the selector's job, driven by ADVISORY_QUERY

    @extend_schema(parameters=ADVISORY_QUERY.parameters())
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Advisory.objects.none()
        values, ordering = ADVISORY_QUERY.parse(query_params(self))
        return advisory_list(
            package=values.get("package", ""), ecosystem=values.get("ecosystem", ""),
            severity=",".join(values.get("severity", [])), alias=values.get("alias", ""),
            search=values.get("search", ""),
            include_withdrawn=values.get("withdrawn", True),
        ).order_by(*ordering)


class AdvisoryDetailApi(RetrieveAPIView):
    serializer_class = AdvisoryDetailOutput
    lookup_url_kwarg = "osv_id"

    def get_object(self):
        advisory = advisory_get(osv_id=self.kwargs["osv_id"])
        if advisory is None:
            raise NotFoundError(f"No advisory {self.kwargs['osv_id']}.",
                                details={"advisory": self.kwargs["osv_id"]})
        return advisory
