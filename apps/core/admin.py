"""``ReadOnlyAdmin``: evidence and audit rows (advisories, runs, decisions, model versions,
predictions, A/B results) are shown in the admin but never added, edited or deleted there;
their services are the only writers."""

from django.contrib import admin


class ReadOnlyAdmin(admin.ModelAdmin):
    def get_readonly_fields(self, request, obj=None):
        # Binary columns (a model artifact) are not shown at all.
        return [f.name for f in self.model._meta.fields if f.get_internal_type() != "BinaryField"]

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
