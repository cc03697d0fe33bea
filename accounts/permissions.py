"""DRF object permission: the view action's permissions, on the object.

Added next to ``ActionPermission`` / ``SigningActionPermission`` on scoped views:
``get_object`` (already limited to the scoped queryset, so outside objects are 404)
then asks ``user.has_perm(perm, obj)`` for the role permissions, answered by
``MembershipBackend``: a reader of the namespace is refused (403) a write its role does not grant.
"""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from accounts.roles import OPERATOR_PERMISSIONS


def _holds(user: Any, perm: str, obj: Any) -> bool:
    """Role permissions are checked on the object; the others (instance management, KMS
    administration) stay plain Django permissions, checked without it."""
    if perm in OPERATOR_PERMISSIONS:
        return user.has_perm(perm, obj)
    return user.has_perm(perm)


class ScopedObjectPermission(BasePermission):
    message = "You do not have permission to perform this action."

    def has_permission(self, request: Request, view: Any) -> bool:
        return True

    def has_object_permission(self, request: Request, view: Any, obj: Any) -> bool:
        user = request.user
        if user.is_superuser:
            return True
        required = view.action_permissions.get(getattr(view, "action", None))
        if required is None:
            return False
        needed = (required,) if isinstance(required, str) else tuple(required)
        missing = [perm for perm in needed if not _holds(user, perm, obj)]
        if not missing:
            return True
        self.message = f"This action needs the permission {missing[0]!r} on this object."
        return False
