"""The APV as a reviewer or a client deciding on it sees it: ``/api/v1/apvs/<code>/`` and
``/api/v1/apvs/stats/``. They show what reviews, wargaming, ML-first and decisions each know
of an APV, so they live here, on top of all of them (docs/architecture.md)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_field, inline_serializer
from rest_framework import serializers
from rest_framework.generics import RetrieveAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.filters import Filter, ListQuery, query_params
from apps.decisions.models import DecisionType
from apps.decisions.selectors import decision_stats
from apps.decisions.services import decisions_allowed
from apps.ml.apis import PredictionSnapshotOutput
from apps.ml.selectors import prediction_snapshot
from apps.reviews.apis import APVOutput, PatchOutput, apv_or_404
from apps.reviews.models import APVStatus, PatchState, PatchStrategy, RiskLevel
from apps.reviews.selectors import apv_stats
from apps.wargaming.models import RunState, Verdict
from apps.wargaming.selectors import apv_wargame


class APVCurrentPatch(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.CharField()
    revision = serializers.IntegerField(help_text="the patch_revision a decision names")
    strategy = serializers.ChoiceField(choices=PatchStrategy.choices)
    state = serializers.ChoiceField(choices=PatchState.choices)
    title = serializers.CharField()
    from_version = serializers.CharField()
    target_version = serializers.CharField()
    risk_level = serializers.ChoiceField(choices=RiskLevel.choices)
    notes = serializers.ListField(child=serializers.CharField())
    branch = serializers.CharField()
    branch_exists = serializers.BooleanField(
        allow_null=True, help_text="false once a rejection deleted the branch; null when the "
                                   "repository cannot be read")
    commit_sha = serializers.CharField()
    forge_pr_url = serializers.CharField()
    diff = serializers.CharField(help_text="the unified diff")
    verdict = serializers.ChoiceField(
        choices=Verdict.choices, allow_null=True,
        help_text="the latest wargame run's verdict on this APV; null when not wargamed, not "
                  "finished, or its exploit does not cover this advisory")


class APVWargame(serializers.Serializer):
    run = serializers.IntegerField()
    url = serializers.CharField(help_text="the run, with its phases' evidence")
    state = serializers.ChoiceField(choices=RunState.choices)
    exploit_covers = serializers.BooleanField(
        help_text="the run's exploit covers this APV's advisory (verdict scope)")
    verdict = serializers.ChoiceField(choices=Verdict.choices, allow_null=True)
    confidence = serializers.FloatField(allow_null=True)
    reason = serializers.CharField()
    exploit = serializers.CharField()
    advisories = serializers.ListField(child=serializers.CharField(),
                                       help_text="the OSV ids the run's exploit covers")


class APVLinks(serializers.Serializer):
    self = serializers.CharField()
    decisions = serializers.CharField(help_text="GET the history, POST a decision")
    patches = serializers.CharField(help_text="GET the revisions, POST a new one")
    runs = serializers.CharField(help_text="the wargame runs of its revisions")
    audit = serializers.CharField()
    advisory = serializers.CharField()


class APVDetailOutput(APVOutput):
    """The detail is enough to decide (SPEC, REST): the advisory's summary, scores and
    evidence and the pin and where it is declared (as in the list, plus the vector and
    CWEs); the current patch (the revision a decision names; null when none is proposed)
    with its diff, its branch and whether that still exists, and its latest wargame verdict
    on this APV; the decisions the caller may make now (by role and status; empty when
    none); the current patch's ML-first prediction, or null; its wargame as it concerns this
    APV: null when not wargamed, else the run with ``exploit_covers``, whose ``verdict`` and
    ``confidence`` are null when the run's exploit does not cover this APV's advisory ("no
    exploit", docs/wargaming.md "Verdict scope"); and links to the rest."""

    cvss_vector = serializers.CharField(source="advisory.cvss_vector")
    cwe_ids = serializers.ListField(source="advisory.cwe_ids", child=serializers.CharField())
    current_patch = serializers.SerializerMethodField()
    allowed_decisions = serializers.SerializerMethodField()
    prediction = serializers.SerializerMethodField()
    wargame = serializers.SerializerMethodField()
    links = serializers.SerializerMethodField()

    class Meta(APVOutput.Meta):
        fields = [*APVOutput.Meta.fields, "cvss_vector", "cwe_ids", "current_patch",
                  "allowed_decisions", "prediction", "wargame", "links"]

    def _url(self, path: str) -> str:
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path

    def _wargame(self, apv) -> dict | None:
        if not hasattr(apv, "_wargame_summary"):
            summary = apv_wargame(apv)
            if summary is not None:
                summary["url"] = self._url(f"/api/v1/wargaming/runs/{summary['run']}/")
            apv._wargame_summary = summary
        return apv._wargame_summary

    @extend_schema_field(APVCurrentPatch(allow_null=True))
    def get_current_patch(self, apv) -> dict | None:
        patch = apv.current_patch
        if patch is None:
            return None
        wargame = self._wargame(apv)
        branch_exists = PatchOutput(context=self.context).get_branch_exists(patch)
        return {
            "id": patch.pk, "url": self._url(f"/api/v1/patches/{patch.pk}/"),
            "revision": patch.revision, "strategy": patch.strategy, "state": patch.state,
            "title": patch.title, "from_version": patch.from_version,
            "target_version": patch.target_version, "risk_level": patch.risk_level,
            "notes": list(patch.notes), "branch": patch.branch, "branch_exists": branch_exists,
            "commit_sha": patch.commit_sha, "forge_pr_url": patch.forge_pr_url,
            "diff": patch.diff, "verdict": wargame["verdict"] if wargame else None,
        }

    @extend_schema_field(serializers.ListField(
        child=serializers.ChoiceField(choices=DecisionType.choices),
        help_text="the decisions the caller may POST now"))
    def get_allowed_decisions(self, apv) -> list[str]:
        request = self.context.get("request")
        if request is None or not request.user.is_authenticated:
            return []
        # The rules live with the decisions (decision_denial, the one place the service and
        # the admin also ask).
        return decisions_allowed(request.user, apv)

    @extend_schema_field(APVWargame(allow_null=True))
    def get_wargame(self, apv) -> dict | None:
        return self._wargame(apv)

    @extend_schema_field(PredictionSnapshotOutput(allow_null=True))
    def get_prediction(self, apv) -> dict | None:
        return prediction_snapshot(apv.current_patch)

    @extend_schema_field(APVLinks)
    def get_links(self, apv) -> dict:
        base = f"/api/v1/apvs/{apv.code}/"
        return {"self": self._url(base), "decisions": self._url(base + "decisions/"),
                "patches": self._url(base + "patches/"), "runs": self._url(base + "runs/"),
                "audit": self._url(f"/api/v1/audit/?apv={apv.code}"),
                "advisory": self._url(f"/api/v1/advisories/{apv.advisory.osv_id}/")}


class APVDetailApi(RetrieveAPIView):
    """Everything needed to decide on one APV, in one call: follow it with ``POST
    .../decisions/`` naming ``current_patch.revision``."""

    serializer_class = APVDetailOutput
    lookup_url_kwarg = "code"

    def get_object(self):
        return apv_or_404(self.kwargs["code"])


STATS_QUERY = ListQuery(filters=[Filter("project", many=True,
                                        description="project id(s) or name(s)")])

_BY_STATUS = inline_serializer("APVCountByStatus", {
    status: serializers.IntegerField() for status in APVStatus.values})


class APVStatsApi(APIView):
    """Counts of APVs by status and severity, overdue, decisions by type and review
    times."""

    @extend_schema(
        parameters=STATS_QUERY.parameters(),
        responses=inline_serializer("APVStats", {
            "total": serializers.IntegerField(),
            "pending_by_severity": serializers.DictField(
                child=serializers.IntegerField(),
                help_text="APVs waiting for a reviewer (pending_review, escalated) by "
                          "severity"),
            "by_status": _BY_STATUS,
            "by_severity": serializers.DictField(
                child=serializers.IntegerField(), help_text="unresolved APVs by severity"),
            "overdue": serializers.IntegerField(),
            "decisions_by_type": serializers.DictField(child=serializers.IntegerField()),
            "review_time_seconds": inline_serializer("ReviewTimes", {
                "mean": serializers.FloatField(), "median": serializers.FloatField(),
                "fastest": serializers.FloatField(), "slowest": serializers.FloatField(),
                "count": serializers.IntegerField()}, allow_null=True),
        }),
    )
    def get(self, request):
        values, _ = STATS_QUERY.parse(query_params(self))
        project = values.get("project", [])
        return Response({**apv_stats(project=project), **decision_stats(project=project)})
