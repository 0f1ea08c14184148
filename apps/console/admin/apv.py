"""The APV queue (changelist) and detail page: the reviewers' workplace.

Decisions are made through confirmation forms that call ``decision_record`` (the same
service as the API), which re-checks permission and revision on every POST.
"""

from __future__ import annotations

import uuid

from django.contrib import admin, messages
from django.db.models import Exists, OuterRef, Q, Subquery
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.safestring import mark_safe

from apps.advisories.selectors import advisory_match_reason
from apps.console import queue
from apps.console.admin.forms import BulkDecisionForm, DecisionForm
from apps.console.queue import SEVERITY_COLOURS, humanise
from apps.core.errors import ApplicationError
from apps.decisions.events import DecisionContext
from apps.decisions.models import DecisionType
from apps.decisions.selectors import decision_list
from apps.decisions.services import (
    decision_denial,
    decision_record,
    decision_retry,
    decisions_allowed,
)
from apps.ml.selectors import prediction_latest
from apps.reviews.diffs import diff_css, diff_html
from apps.reviews.models import APV, APVStatus, PatchStrategy
from apps.wargaming.models import RunState, Verdict, WargameRun
from apps.wargaming.selectors import covering_runs, no_exploit_reason, run_covers

QUEUE_STATUSES = [APVStatus.PENDING_REVIEW, APVStatus.ESCALATED]
DECISION_LABELS = dict(DecisionType.choices)


class QueueStatusFilter(admin.SimpleListFilter):
    """Defaults to the review queue (pending_review + escalated)."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("queue", "Review queue (pending + escalated)"), *APVStatus.choices,
                ("all", "All")]

    def choices(self, changelist):
        value = self.value() or "queue"
        for lookup, title in self.lookup_choices:
            yield {"selected": value == str(lookup),
                   "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                   "display": title}

    def queryset(self, request, queryset):
        value = self.value() or "queue"
        if value == "queue":
            return queryset.filter(status__in=QUEUE_STATUSES)
        if value == "all":
            return queryset
        return queryset.filter(status=value)


class OverdueFilter(admin.SimpleListFilter):
    title = "SLA"
    parameter_name = "overdue"

    def lookups(self, request, model_admin):
        return [("yes", "Past SLA"), ("no", "Within SLA")]

    def queryset(self, request, queryset):
        late = Q(sla_due_at__lt=timezone.now())
        if self.value() == "yes":
            return queryset.filter(late).exclude(status=APVStatus.RESOLVED)
        if self.value() == "no":
            return queryset.exclude(late)
        return queryset


class StrategyFilter(admin.SimpleListFilter):
    title = "patch strategy"
    parameter_name = "strategy"

    def lookups(self, request, model_admin):
        return PatchStrategy.choices

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(current_patch__strategy=self.value())
        return queryset


class VerdictFilter(admin.SimpleListFilter):
    """The verdict of the latest wargame of the APV's current patch that covers its
    advisory ("no exploit": the patch was wargamed with an exploit for other advisories)."""

    title = "wargame verdict"
    parameter_name = "verdict"

    def lookups(self, request, model_admin):
        return [("none", "Not wargamed yet"), ("no_exploit", "No exploit for the advisory"),
                *Verdict.choices]

    def queryset(self, request, queryset):
        if self.value() == "none":
            return queryset.filter(wargame_verdict__isnull=True, wargame_finished=False)
        if self.value() == "no_exploit":
            return queryset.filter(wargame_verdict__isnull=True, wargame_finished=True)
        if self.value():
            return queryset.filter(wargame_verdict=self.value())
        return queryset


class AssignedToMeFilter(admin.SimpleListFilter):
    title = "assignment"
    parameter_name = "assigned"

    def lookups(self, request, model_admin):
        return [("me", "Assigned to me or my groups")]

    def queryset(self, request, queryset):
        if self.value() == "me":
            return queryset.filter(Q(assignee=request.user)
                                   | Q(assigned_group__in=request.user.groups.all()))
        return queryset


@admin.register(APV)
class APVAdmin(admin.ModelAdmin):
    list_display = ["code_link", "project", "package_change", "advisory_ids", "severity_badge",
                    "priority", "verdict", "sla_due", "waiting", "assigned"]
    list_display_links = None
    list_filter = [QueueStatusFilter, "severity", "project", StrategyFilter, VerdictFilter,
                   OverdueFilter, AssignedToMeFilter]
    search_fields = ["code", "=advisory__osv_id", "=advisory__alias_rows__alias",
                     "=dependency__normalised_name"]
    list_select_related = ["project", "dependency", "advisory", "current_patch", "assignee",
                           "assigned_group"]
    # code last: APVs raised by one scan tie on priority and SLA; the order must not wobble.
    ordering = ["-priority", "sla_due_at", "code"]
    list_per_page = 100
    list_max_show_all = 2000
    show_full_result_count = False
    actions = ["bulk_reject", "bulk_escalate", "bulk_false_positive"]
    change_list_template = "admin/reviews/apv/queue.html"
    change_form_template = "admin/reviews/apv/detail.html"

    # --- columns ----------------------------------------------------------------------------
    # Cells come from apps.console.queue, which also renders the queue's rows in one pass.
    @admin.display(description="APV", ordering="code")
    def code_link(self, obj):
        return mark_safe(queue.cell_code(obj, reverse("admin:reviews_apv_change",  # noqa: S308
                                                      args=[obj.pk])))

    @admin.display(description="package", ordering="dependency__normalised_name")
    def package_change(self, obj):
        return mark_safe(queue.cell_package(obj))  # noqa: S308 (escaped in queue)

    @admin.display(description="advisory", ordering="advisory__osv_id")
    def advisory_ids(self, obj):
        return mark_safe(queue.cell_advisory(obj))  # noqa: S308

    @admin.display(description="severity", ordering="severity")
    def severity_badge(self, obj):
        return mark_safe(queue.cell_severity(obj))  # noqa: S308

    @admin.display(description="verdict", ordering="wargame_verdict")
    def verdict(self, obj):
        return mark_safe(queue.cell_verdict(obj))  # noqa: S308

    @admin.display(description="SLA due", ordering="sla_due_at")
    def sla_due(self, obj):
        return mark_safe(queue.cell_sla(obj, timezone.now()))  # noqa: S308

    @admin.display(description="waiting", ordering="pending_review_at")
    def waiting(self, obj):
        return queue.cell_waiting(obj, timezone.now())

    @admin.display(description="assignee")
    def assigned(self, obj):
        return mark_safe(queue.cell_assigned(obj))  # noqa: S308

    # --- permissions ------------------------------------------------------------------------
    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # APVs change through decisions and scans, never by editing fields

    def has_decide_permission(self, request):
        return request.user.has_perm("decisions.add_decision")

    # --- queue ------------------------------------------------------------------------------
    def get_queryset(self, request):
        # The queue shows a few columns of each joined row: leave the big JSON and text
        # fields (the raw OSV record, the diff) in the database; decoding them dominated the
        # render time of a long queue.
        # Verdict scope: only a run whose exploit covers the APV's advisory gives it a
        # verdict; a finished run that does not makes it "no exploit".
        covering = covering_runs()
        finished = WargameRun.objects.filter(patch=OuterRef("current_patch"),
                                             state=RunState.FINISHED)
        return super().get_queryset(request).annotate(
            wargame_verdict=Subquery(covering.values("verdict")[:1]),
            wargame_confidence=Subquery(covering.values("confidence")[:1]),
            wargame_finished=Exists(finished),
        ).defer(
            "advisory__raw", "advisory__details", "advisory__references",
            "advisory__severity_vectors", "advisory__cwe_ids", "current_patch__diff",
            "current_patch__notes", "dependency__hashes", "dependency__extras",
            "fixed_in", "project__last_scan_errors", "project__description")

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "queue_statuses": list(QUEUE_STATUSES)}
        return super().changelist_view(request, extra_context)

    # --- detail -----------------------------------------------------------------------------
    def get_urls(self):
        urls = super().get_urls()
        decide = self.admin_site.admin_view(self.decide_view)
        retry = self.admin_site.admin_view(self.retry_view)
        return [path("<path:object_id>/decide/<str:decision>/", decide,
                     name="reviews_apv_decide"),
                path("<path:object_id>/retry/<int:decision_id>/", retry,
                     name="reviews_apv_retry"), *urls]

    def _apv(self, object_id) -> APV:
        apv = (APV.objects.select_related("project", "dependency", "advisory", "current_patch",
                                          "assignee", "assigned_group")
               .filter(pk=object_id).first())
        if apv is None:
            raise Http404
        return apv

    def change_view(self, request, object_id, form_url="", extra_context=None):
        if not self.has_view_permission(request):
            return super().change_view(request, object_id, form_url, extra_context)
        apv = self._apv(object_id)
        patch = apv.current_patch
        wargame = (WargameRun.objects.filter(patch=patch).prefetch_related("phases")
                   .order_by("-id").first() if patch else None)
        covers = run_covers(wargame, apv)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta, "title": f"{apv.code}: {apv.advisory.osv_id}",
            "apv": apv, "advisory": apv.advisory, "dependency": apv.dependency,
            "patch": patch, "diff_html": diff_html(patch.diff) if patch and patch.diff else "",
            "diff_css": diff_css(),
            "references": [r for r in apv.advisory.references if r.get("url")],
            "decisions": decision_list(apv_code=apv.code).select_related("audit"),
            "allowed": [(d, DECISION_LABELS[d]) for d in decisions_allowed(request.user, apv)],
            "overdue": apv.sla_due_at < timezone.now(),
            "waiting": humanise(timezone.now() - apv.pending_review_at)
            if apv.pending_review_at else "—",
            "severity_colour": SEVERITY_COLOURS.get(apv.severity, "#6b7280"),
            "wargame": wargame, "wargame_covers": covers,
            "no_exploit": no_exploit_reason(wargame, apv)
            if wargame and wargame.state == RunState.FINISHED and not covers else "",
            "prediction": prediction_latest(patch),
            "match_reason": advisory_match_reason(
                advisory=apv.advisory, ecosystem=apv.dependency.ecosystem,
                normalised_name=apv.dependency.normalised_name,
                version=apv.dependency.version),
            "has_view_permission": True, "original": apv,
            "can_retry": self.has_decide_permission(request),
        }
        return TemplateResponse(request, self.change_form_template, context)

    def decide_view(self, request, object_id, decision):
        if decision not in DECISION_LABELS:
            raise Http404
        apv = self._apv(object_id)
        detail_url = reverse("admin:reviews_apv_change", args=[apv.pk])
        denial = decision_denial(request.user, apv, decision)
        if denial is not None:
            self.message_user(request, str(denial), messages.ERROR)
            return HttpResponseRedirect(detail_url)
        patch = apv.current_patch
        if request.method == "POST":
            form = DecisionForm(request.POST, decision=decision)
            if form.is_valid():
                return self._record(request, apv, decision, form.cleaned_data, detail_url)
        else:
            form = DecisionForm(decision=decision, initial={
                "patch_revision": patch.revision if patch else None,
                "idempotency_key": uuid.uuid4().hex, "confidence": 1.0})
        context = {**self.admin_site.each_context(request), "opts": self.model._meta,
                   "title": f"{DECISION_LABELS[decision]} {apv.code}?", "apv": apv,
                   "patch": patch, "form": form, "decision": decision,
                   "decision_label": DECISION_LABELS[decision], "detail_url": detail_url}
        return TemplateResponse(request, "admin/reviews/apv/decide.html", context)

    def retry_view(self, request, object_id, decision_id):
        """Try a failed decision's action again (POST only; the service checks the rights
        and that the APV is still where the failure left it)."""
        apv = self._apv(object_id)
        detail_url = reverse("admin:reviews_apv_change", args=[apv.pk])
        if request.method != "POST":
            return HttpResponseRedirect(detail_url)
        try:
            record = decision_retry(decision_id=decision_id, user=request.user, via="admin")
        except ApplicationError as exc:
            self.message_user(request, f"Not retried: {exc.message}", messages.WARNING)
            return HttpResponseRedirect(detail_url)
        self._report(request, apv, record)
        return HttpResponseRedirect(detail_url)

    def _report(self, request, apv, recorded) -> bool:
        if recorded.outcome == "applying":
            self.message_user(request, f"{apv.code}: {recorded.get_decision_display()} "
                              "recorded; git and the forge act in the background (the "
                              "decision history shows the outcome).", messages.SUCCESS)
            return True
        if recorded.succeeded:
            self.message_user(request, f"{apv.code}: {recorded.get_decision_display()} "
                              f"recorded ({recorded.action_taken.replace('_', ' ')}); now "
                              f"{recorded.status_after.replace('_', ' ')}.", messages.SUCCESS)
            return True
        self.message_user(request, f"{apv.code}: the decision was recorded but its action "
                          f"failed ({recorded.action_taken}): {recorded.action_error}. "
                          "Retry it from the decision history, or decide again.",
                          messages.ERROR)
        return False

    def _record(self, request, apv, decision, data, detail_url):
        try:
            result = decision_record(
                apv_code=apv.code, reviewer=request.user, decision=decision,
                justification=data["justification"], confidence=data["confidence"],
                modifications=data.get("modifications") or "",
                patch_revision=data.get("patch_revision"), expires_at=data.get("expires_at"),
                idempotency_key=f"admin-{data['idempotency_key']}",
                context=_context(request))
        except ApplicationError as exc:
            level = messages.WARNING if exc.status_code == 409 else messages.ERROR
            self.message_user(request, f"Nothing was changed: {exc.message}", level)
            return HttpResponseRedirect(detail_url)
        if self._report(request, apv, result.decision):
            return HttpResponseRedirect(reverse("admin:reviews_apv_changelist"))
        return HttpResponseRedirect(detail_url)

    # --- bulk actions -----------------------------------------------------------------------
    def _bulk(self, request, queryset, decision):
        """One decision per APV, each with its own audit record, after a confirmation."""
        if "confirm" in request.POST:
            form = BulkDecisionForm(request.POST)
            if form.is_valid():
                done, refused = 0, []
                for apv in queryset.select_related("current_patch"):
                    try:
                        decision_record(
                            apv_code=apv.code, reviewer=request.user, decision=decision,
                            justification=form.cleaned_data["justification"],
                            patch_revision=apv.current_patch.revision
                            if apv.current_patch else None,
                            context=_context(request))
                        done += 1
                    except ApplicationError as exc:
                        refused.append(f"{apv.code}: {exc.message}")
                if done:
                    self.message_user(request, f"{DECISION_LABELS[decision]}: {done} APV(s) "
                                      "decided, one audited decision each.", messages.SUCCESS)
                for line in refused:
                    self.message_user(request, f"Not changed — {line}", messages.WARNING)
                return None
        else:
            form = BulkDecisionForm()
        context = {**self.admin_site.each_context(request), "opts": self.model._meta,
                   "title": f"{DECISION_LABELS[decision]} {queryset.count()} APV(s)?",
                   "apvs": queryset, "form": form, "action": request.POST.get("action"),
                   "decision_label": DECISION_LABELS[decision],
                   "selected": request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME)}
        return TemplateResponse(request, "admin/reviews/apv/bulk_decide.html", context)

    @admin.action(description="Reject selected APVs' patches", permissions=["decide"])
    def bulk_reject(self, request, queryset):
        return self._bulk(request, queryset, DecisionType.REJECT)

    @admin.action(description="Escalate selected APVs to the leads", permissions=["decide"])
    def bulk_escalate(self, request, queryset):
        return self._bulk(request, queryset, DecisionType.ESCALATE)

    @admin.action(description="Mark selected APVs as false positives", permissions=["decide"])
    def bulk_false_positive(self, request, queryset):
        return self._bulk(request, queryset, DecisionType.FALSE_POSITIVE)


def _context(request) -> DecisionContext:
    return DecisionContext(client_ip=request.META.get("REMOTE_ADDR") or None,
                           user_agent=request.headers.get("User-Agent", ""), via="admin")
