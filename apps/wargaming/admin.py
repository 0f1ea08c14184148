from django.contrib import admin

from apps.core.admin import ReadOnlyAdmin
from apps.wargaming.models import WargamePhase, WargameRun


class PhaseInline(admin.TabularInline):
    model = WargamePhase
    extra = 0
    can_delete = False
    fields = ["name", "outcome", "exit_code", "exploited", "duration_s", "evidence", "output"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(WargameRun)
class WargameRunAdmin(ReadOnlyAdmin):
    """Runs are evidence: read-only."""

    list_display = ["id", "patch", "package", "baseline_version", "patched_version", "verdict",
                    "covers", "confidence", "network_isolated", "duration_s", "attempts",
                    "created_at"]
    list_filter = ["verdict", "kind", "state"]
    search_fields = ["package", "exploit"]
    inlines = [PhaseInline]

    @admin.display(description="verdict covers")
    def covers(self, obj):
        """Verdict scope: the advisories the exploit names; the patch's others have no
        exploit, and this verdict says nothing about them."""
        return ", ".join(obj.advisories) or "no advisory"
