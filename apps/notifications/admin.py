"""Subscriptions are edited by staff (with the notifications permissions); notifications
and deliveries are audit rows, read-only."""

from django import forms
from django.contrib import admin

from apps.core.admin import ReadOnlyAdmin
from apps.notifications.models import Channel, Delivery, Event, Notification, Subscription


class SubscriptionForm(forms.ModelForm):
    events = forms.MultipleChoiceField(
        choices=Event.choices, required=False, widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every event.")
    channels = forms.MultipleChoiceField(
        choices=Channel.choices, widget=forms.CheckboxSelectMultiple, initial=[Channel.EMAIL],
        help_text="Email goes to the user's address; webhook sends the events chosen here "
                  "to the operator's NOTIFY_WEBHOOK_URLS too (docs/notifications.md).")

    class Meta:
        model = Subscription
        fields = ["user", "project", "events", "channels", "active"]

    def clean(self):
        cleaned = super().clean()
        user = cleaned.get("user")
        if user is not None and Channel.EMAIL in cleaned.get("channels", []) and not user.email:
            self.add_error("user", "This user has no email address to send to.")
        return cleaned


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    form = SubscriptionForm
    list_display = ["user", "project_scope", "event_list", "channel_list", "active"]
    list_filter = ["active", "project"]
    search_fields = ["user__username", "user__email", "project__name"]
    list_select_related = ["user", "project"]

    @admin.display(description="project")
    def project_scope(self, obj):
        return obj.project.name if obj.project_id else "every project"

    @admin.display(description="events")
    def event_list(self, obj):
        return ", ".join(obj.events) if obj.events else "every event"

    @admin.display(description="channels")
    def channel_list(self, obj):
        return ", ".join(obj.channels)


class DeliveryInline(admin.TabularInline):
    model = Delivery
    can_delete = False
    extra = 0
    fields = ["channel", "target", "outcome", "attempts", "last_error", "queued_at",
              "sent_at"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "event", "title", "project"]
    list_filter = ["event"]
    search_fields = ["title", "subject_key", "apv__code"]
    list_select_related = ["project"]
    inlines = [DeliveryInline]


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "notification", "channel", "target", "outcome", "attempts",
                    "sent_at"]
    list_filter = ["channel", "outcome"]
    search_fields = ["target", "notification__title"]
    list_select_related = ["notification"]
