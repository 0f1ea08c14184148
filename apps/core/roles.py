"""The two roles of the spec (Users): ``reviewers`` and ``leads``.

Groups carry the permissions; a lead is in both groups. Permissions named here
that do not exist yet (their app has not landed or not migrated) are skipped and
granted by the post_migrate hook once they exist, so the grants follow the
schema without hand edits.
"""

from __future__ import annotations

import structlog

log = structlog.get_logger(__name__)

REVIEWERS = "reviewers"
LEADS = "leads"

_REVIEWER_PERMISSIONS = [
    "advisories.view_advisory",
    "inventory.view_project",
    "inventory.view_dependency",
    "reviews.view_apv",
    "reviews.view_patch",
    "reviews.add_patch",
    "decisions.view_decision",
    "decisions.add_decision",
    "wargaming.view_wargamerun",
    "ml.view_prediction",
    "ml.view_modelversion",
    "ab_testing.view_experiment",
    "ab_testing.view_abtestresult",
]
_LEAD_PERMISSIONS = [
    *_REVIEWER_PERMISSIONS,
    "decisions.decide_escalated",
    "decisions.accept_risk",
    "inventory.add_project",
    "inventory.change_project",
    "ml.activate_modelversion",
    "ab_testing.change_experiment",
    # Leads decide who hears about what (issue 15): subscriptions, and the sent log.
    "notifications.view_subscription",
    "notifications.add_subscription",
    "notifications.change_subscription",
    "notifications.delete_subscription",
    "notifications.view_notification",
    "notifications.view_delivery",
]

ROLE_PERMISSIONS: dict[str, list[str]] = {
    REVIEWERS: _REVIEWER_PERMISSIONS,
    LEADS: _LEAD_PERMISSIONS,
}


def roles_sync(*, group_model=None, permission_model=None) -> dict[str, int]:
    """Create the role groups and grant every listed permission that exists.

    Takes the models as arguments so a data migration can pass its historical ones.
    Returns how many permissions each group holds. Never removes a permission an
    operator granted by hand.
    """
    if group_model is None or permission_model is None:
        from django.contrib.auth.models import Group, Permission

        group_model, permission_model = Group, Permission
    granted = {}
    for role, names in ROLE_PERMISSIONS.items():
        group, _ = group_model.objects.get_or_create(name=role)
        wanted = [tuple(name.split(".", 1)) for name in names]
        found = [
            p
            for p in permission_model.objects.filter(
                codename__in=[codename for _, codename in wanted]
            ).select_related("content_type")
            if (p.content_type.app_label, p.codename) in wanted
        ]
        group.permissions.add(*found)
        granted[role] = group.permissions.count()
    return granted


def sync_roles_after_migrate(sender, **kwargs) -> None:
    if kwargs.get("plan") is not None and not kwargs.get("plan"):
        return
    roles_sync()
