"""Decisions and their audit records are read-only in the admin: no edit, no delete."""

from django.contrib import admin

from apps.core.admin import ReadOnlyAdmin
from apps.decisions.models import Decision, DecisionAudit


class DecisionAuditInline(admin.StackedInline):
    model = DecisionAudit
    can_delete = False
    readonly_fields = ["reviewer_username", "recorded_at", "client_ip", "user_agent", "via",
                       "snapshot"]

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Decision)
class DecisionAdmin(ReadOnlyAdmin):
    list_display = ["decided_at", "apv", "decision", "reviewer", "patch_revision",
                    "outcome", "action_taken", "status_after"]
    list_filter = ["decision", "outcome", "action_taken"]
    search_fields = ["apv__code", "reviewer__username"]
    list_select_related = ["apv", "reviewer"]
    inlines = [DecisionAuditInline]


@admin.register(DecisionAudit)
class DecisionAuditAdmin(ReadOnlyAdmin):
    list_display = ["decision", "reviewer_username", "recorded_at", "client_ip", "via"]
    list_select_related = ["decision", "decision__apv"]
