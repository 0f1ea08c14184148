"""The APV as a reviewer or a client deciding on it sees it: ``/api/v1/apvs/<code>/`` and
``/api/v1/apvs/stats/``. They show what reviews, wargaming, ML-first and decisions each know
of an APV, so they live here, on top of all of them (docs/architecture.md)."""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.generics import RetrieveAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.decisions.selectors import decision_stats
from apps.decisions.services import decisions_allowed
from apps.ml.selectors import prediction_snapshot
from apps.reviews.apis import APVOutput
from apps.reviews.selectors import apv_get, apv_stats
from apps.wargaming.selectors import apv_wargame


class APVDetailOutput(APVOutput):
    """The detail is enough to decide (SPEC, REST): it adds the current patch (the revision
    a decision names; null when none is proposed) with its latest wargame verdict on this
    APV; the decisions the caller may make now (by role and status; empty when none); the
    current patch's ML-first prediction (route, probability, confidence, what drove it), or
    null when it has none; and its wargame as it concerns this APV: null when not
    wargamed, else the run with ``exploit_covers``, whose ``verdict`` and ``confidence``
    are null when the run's exploit does not cover this APV's advisory ("no exploit",
    docs/wargaming.md "Verdict scope")."""

    current_patch = serializers.SerializerMethodField()
    allowed_decisions = serializers.SerializerMethodField()
    prediction = serializers.SerializerMethodField()
    wargame = serializers.SerializerMethodField()

    class Meta(APVOutput.Meta):
        fields = [*APVOutput.Meta.fields, "current_patch", "allowed_decisions", "prediction",
                  "wargame"]

    def _wargame(self, apv) -> dict | None:
        if not hasattr(apv, "_wargame_summary"):
            apv._wargame_summary = apv_wargame(apv)
        return apv._wargame_summary

    @extend_schema_field(inline_serializer("APVCurrentPatch", {
        "id": serializers.IntegerField(), "revision": serializers.IntegerField(),
        "strategy": serializers.CharField(), "state": serializers.CharField(),
        "branch": serializers.CharField(), "commit_sha": serializers.CharField(),
        "title": serializers.CharField(), "target_version": serializers.CharField(),
        "forge_pr_url": serializers.CharField(),
        "verdict": serializers.CharField(
            allow_null=True, help_text="the latest wargame run's verdict on this APV; null "
            "when not wargamed, not finished, or its exploit does not cover this advisory"),
    }, allow_null=True))
    def get_current_patch(self, apv) -> dict | None:
        patch = apv.current_patch
        if patch is None:
            return None
        wargame = self._wargame(apv)
        return {
            "id": patch.pk, "revision": patch.revision, "strategy": patch.strategy,
            "state": patch.state, "branch": patch.branch, "commit_sha": patch.commit_sha,
            "title": patch.title, "target_version": patch.target_version,
            "forge_pr_url": patch.forge_pr_url,
            "verdict": wargame["verdict"] if wargame else None,
        }

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_allowed_decisions(self, apv) -> list[str]:
        request = self.context.get("request")
        if request is None or not request.user.is_authenticated:
            return []
        # The rules live with the decisions (decision_denial, the one place the service and
        # the admin also ask).
        return decisions_allowed(request.user, apv)

    @extend_schema_field(inline_serializer("APVWargame", {
        "run": serializers.IntegerField(), "state": serializers.CharField(),
        "exploit_covers": serializers.BooleanField(),
        "verdict": serializers.CharField(allow_null=True),
        "confidence": serializers.FloatField(allow_null=True),
        "reason": serializers.CharField(), "exploit": serializers.CharField(),
        "advisories": serializers.ListField(child=serializers.CharField()),
    }, allow_null=True))
    def get_wargame(self, apv) -> dict | None:
        return self._wargame(apv)

    @extend_schema_field(serializers.DictField(allow_null=True))
    def get_prediction(self, apv) -> dict | None:
        return prediction_snapshot(apv.current_patch)


class APVDetailApi(RetrieveAPIView):
    serializer_class = APVDetailOutput
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
            "decisions_by_type": serializers.DictField(child=serializers.IntegerField()),
            "review_time_seconds": inline_serializer("ReviewTimes", {
                "mean": serializers.FloatField(), "median": serializers.FloatField(),
                "fastest": serializers.FloatField(), "slowest": serializers.FloatField(),
                "count": serializers.IntegerField()}, allow_null=True),
        }),
    )
    def get(self, request):
        project = request.query_params.get("project", "")
        return Response({**apv_stats(project=project), **decision_stats(project=project)})
