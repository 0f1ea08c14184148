"""``has_perm(codename)``: a DRF permission class that requires one model permission
(the role grants of apps/core/roles.py), so every write names the permission it needs."""

from __future__ import annotations

from rest_framework.permissions import BasePermission


def has_perm(perm: str, *, write_only: bool = False) -> type[BasePermission]:
    class HasPerm(BasePermission):
        message = f"This needs the permission {perm}."

        def has_permission(self, request, view) -> bool:
            user = request.user
            if not (user and user.is_authenticated):
                return False
            if write_only and request.method in ("GET", "HEAD", "OPTIONS"):
                return True
            return user.has_perm(perm)

    HasPerm.__name__ = f"HasPerm_{perm.replace('.', '_')}"
    return HasPerm
