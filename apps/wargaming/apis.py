"""``POST /api/v1/wargaming/validate`` and ``GET /api/v1/wargaming/runs/{id}/``."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.generics import RetrieveAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.permissions import has_perm
from apps.core.queue import enqueue_on_commit, require_broker
from apps.reviews.models import Patch
from apps.wargaming.models import WargamePhase, WargameRun
from apps.wargaming.services import wargame_start


class PhaseOutput(serializers.ModelSerializer):
    class Meta:
        model = WargamePhase
        fields = ["name", "outcome", "exit_code", "exploited", "duration_s", "evidence",
                  "output", "environment"]


class RunOutput(serializers.ModelSerializer):
    """A run and its phases. ``advisories``: the OSV ids its exploit covers; the verdict is
    about those only (verdict scope). ``attempts``: how often it was claimed (a redelivered
    task re-runs a run whose worker died)."""

    phases = PhaseOutput(many=True)

    class Meta:
        model = WargameRun
        fields = ["id", "patch", "patch_revision", "kind", "state", "verdict", "confidence",
                  "reason", "exploit", "advisories", "package", "baseline_version",
                  "patched_version", "network_isolated", "sandbox", "started_at",
                  "finished_at", "duration_s", "attempts", "trigger", "phases"]


class RunDetailApi(RetrieveAPIView):
    serializer_class = RunOutput
    queryset = WargameRun.objects.prefetch_related("phases")


class ValidateInput(serializers.Serializer):
    patch = serializers.IntegerField(min_value=1)


class ValidateApi(APIView):
    """Start a wargame for a patch: 202 with the run id (the same run if one exists)."""

    permission_classes = [has_perm("reviews.add_patch",
                                   message="Starting a wargame needs the reviewer role.")]

    @extend_schema(
        request=ValidateInput,
        responses={202: inline_serializer("ValidateOutput", {
            "run": serializers.IntegerField(), "state": serializers.CharField(),
            "created": serializers.BooleanField()})},
    )
    def post(self, request):
        data = ValidateInput(data=request.data)
        data.is_valid(raise_exception=True)
        patch = get_object_or_404(Patch, pk=data.validated_data["patch"])
        require_broker()  # a run nobody will execute is not started (503 instead)
        run, created = wargame_start(patch=patch, trigger=f"api:{request.user.get_username()}")
        if created:
            from apps.wargaming.tasks import run_wargame

            enqueue_on_commit(run_wargame, run.pk)
        return Response({"run": run.pk, "state": run.state, "created": created}, status=202)
