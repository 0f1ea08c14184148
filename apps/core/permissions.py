"""``has_perm(codename)``: a DRF permission class that requires one model permission
(the role grants of apps/core/roles.py), so every write names the permission it needs."""

from __future__ import annotations

from rest_framework.permissions import BasePermission


def has_perm(perm: str, *, message: str = "") -> type[BasePermission]:
    class HasPerm(BasePermission):
        def has_permission(self, request, view) -> bool:
            user = request.user
            return bool(user and user.is_authenticated and user.has_perm(perm))

    HasPerm.perm = perm  # read by the schema (apps/core/schema.py) to name the roles
    HasPerm.message = message or f"This needs the permission {perm}."
    HasPerm.__name__ = f"HasPerm_{perm.replace('.', '_')}"
    return HasPerm
