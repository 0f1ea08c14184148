"""``POST /api/v1/wargaming/validate``, ``GET /api/v1/wargaming/runs/`` (and one by id), and
the runs of an APV (``/apvs/{code}/runs/``) and of a patch (``/patches/{id}/runs/``)."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_field, inline_serializer
from rest_framework import serializers
from rest_framework.generics import ListAPIView, RetrieveAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.errors import NotFoundError
from apps.core.filters import Filter, ListQuery, query_params
from apps.core.permissions import has_perm
from apps.core.queue import enqueue_on_commit, require_broker
from apps.core.schema import errors
from apps.reviews.models import APV, Patch
from apps.wargaming.models import RunState, Verdict, WargamePhase, WargameRun
from apps.wargaming.selectors import no_exploit_reason, run_covers, run_list
from apps.wargaming.services import wargame_start


class PhaseOutput(serializers.ModelSerializer):
    evidence = serializers.DictField(help_text="what the exploit reported (its JSON line)")
    environment = serializers.ListField(child=serializers.CharField(),
                                        help_text="what was installed")

    class Meta:
        model = WargamePhase
        fields = ["name", "outcome", "exit_code", "exploited", "duration_s", "evidence",
                  "output", "environment"]


class ScopeOutput(serializers.Serializer):
    apv = serializers.CharField()
    advisory = serializers.CharField()
    covered = serializers.BooleanField(help_text="the run's exploit covers this advisory")
    verdict = serializers.ChoiceField(
        choices=Verdict.choices, allow_null=True,
        help_text="the run's verdict for this APV: null when not covered ('no exploit') or "
                  "not finished")
    reason = serializers.CharField()


class RunOutput(serializers.ModelSerializer):
    """A run and its phases. ``advisories``: the OSV ids its exploit covers; the verdict is
    about those only (verdict scope), and ``scope`` says, APV by APV of the patch, which
    the verdict speaks for. ``attempts``: how often it was claimed (a redelivered task
    re-runs a run whose worker died)."""

    phases = PhaseOutput(many=True)
    advisories = serializers.ListField(child=serializers.CharField(),
                                       help_text="OSV ids of the advisories the exploit covers")
    sandbox = serializers.DictField(help_text="limits that applied")
    scope = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField(help_text="this run, with its phases' evidence")

    class Meta:
        model = WargameRun
        fields = ["id", "url", "patch", "patch_revision", "kind", "state", "verdict",
                  "confidence", "reason", "exploit", "advisories", "scope", "package",
                  "baseline_version", "patched_version", "network_isolated", "sandbox",
                  "started_at", "finished_at", "duration_s", "attempts", "trigger", "phases"]

    @extend_schema_field(ScopeOutput(many=True))
    def get_scope(self, run) -> list[dict]:
        if run.patch_id is None:
            return []
        finished = run.state == RunState.FINISHED
        rows = []
        for apv in run.patch.apvs.all():
            covered = run_covers(run, apv)
            rows.append({
                "apv": apv.code, "advisory": apv.advisory.osv_id, "covered": covered,
                "verdict": run.verdict if covered and finished else None,
                "reason": run.reason if covered or not finished
                else no_exploit_reason(run, apv)})
        return sorted(rows, key=lambda r: r["apv"])

    def get_url(self, run) -> str:
        return run_url(self.context.get("request"), run)


def run_url(request, run) -> str:
    path = f"/api/v1/wargaming/runs/{run.pk}/"
    return request.build_absolute_uri(path) if request is not None else path


RUN_QUERY = ListQuery(
    filters=[
        Filter("apv", many=True, description="APV code(s): runs of patches covering them"),
        Filter("patch", "int", many=True, description="patch id(s)"),
        Filter("verdict", "choice", choices=Verdict.values, many=True),
        Filter("state", "choice", choices=RunState.values, many=True),
        Filter("kind", "choice", choices=("package", "http"), many=True),
    ],
    ordering={"created_at": "created_at", "finished_at": "finished_at", "id": "id"},
    default=["-created_at"], tie_breaker="id")


class _RunListApi(ListAPIView):
    serializer_class = RunOutput
    permission_classes = [has_perm("wargaming.view_wargamerun")]
    filter_backends: list = []

    def scoped(self) -> dict:
        return {}

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return WargameRun.objects.none()
        values, ordering = RUN_QUERY.parse(query_params(self))
        return run_list(**{**values, **self.scoped()}).order_by(*ordering)


class RunListApi(_RunListApi):
    """Wargame runs, newest first."""

    @extend_schema(parameters=RUN_QUERY.parameters())
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class APVRunsApi(_RunListApi):
    """The runs of every patch revision of an APV, newest first (the filters of
    ``/wargaming/runs/`` apply)."""

    @extend_schema(parameters=[p for p in RUN_QUERY.parameters() if p.name != "apv"])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def scoped(self) -> dict:
        code = self.kwargs["code"]
        if not APV.objects.filter(code=code).exists():
            raise NotFoundError(f"No APV {code}.", details={"apv": code})
        return {"apv": [code]}


class PatchRunsApi(_RunListApi):
    """The runs of a patch revision (one per revision), newest first."""

    @extend_schema(parameters=[p for p in RUN_QUERY.parameters() if p.name != "patch"])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def scoped(self) -> dict:
        pk = self.kwargs["pk"]
        if not Patch.objects.filter(pk=pk).exists():
            raise NotFoundError(f"No patch {pk}.", details={"patch": pk})
        return {"patch": [pk]}


class RunDetailApi(RetrieveAPIView):
    """One run, with its phases and their evidence."""

    serializer_class = RunOutput
    permission_classes = [has_perm("wargaming.view_wargamerun")]
    queryset = run_list()


class ValidateInput(serializers.Serializer):
    patch = serializers.IntegerField(min_value=1)


ValidateOutput = inline_serializer("ValidateOutput", {
    "run": serializers.IntegerField(), "url": serializers.CharField(),
    "state": serializers.ChoiceField(choices=RunState.choices),
    "verdict": serializers.ChoiceField(choices=Verdict.choices, allow_null=True),
    "created": serializers.BooleanField(help_text="false: the revision's run existed")})


class ValidateApi(APIView):
    """Wargame a patch revision (one run per revision: asking again answers the same run).
    ``200`` when the run has finished (on the embedded profile it runs before the answer;
    or it had finished before), ``202`` while it is queued or running; ``Location`` names
    the run either way. The APVs' review time keeps running meanwhile."""

    permission_classes = [has_perm("reviews.add_patch",
                                   message="Starting a wargame needs the reviewer role.")]

    @extend_schema(
        request=ValidateInput,
        responses={200: ValidateOutput, 202: ValidateOutput, **errors(
            _503="No broker to queue the run on (service_unavailable).")},
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
        run.refresh_from_db()  # in-process tasks have run it by now
        finished = run.state == RunState.FINISHED
        url = run_url(request, run)
        return Response({"run": run.pk, "url": url, "state": run.state,
                         "verdict": run.verdict or None, "created": created},
                        status=200 if finished else 202, headers={"Location": url})
