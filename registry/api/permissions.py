"""One permission class for the registry API: each view action needs one Django permission.

A view lists ``action_permissions = {"list": "registry.view_tag", ...}``. Anonymous
requests get 401, users without the permission 403; superusers have every permission.
An action missing from the mapping is refused, so a new action is never open by accident.
"""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request


class RegistryActionPermission(BasePermission):
    message = "You do not have permission to perform this action."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        action = getattr(view, "action", None)
        if action is None:
            return True  # no handler for this method: the view answers 405
        required = view.action_permissions.get(action)
        if required is None:
            self.message = f"The action {action!r} is not available."
            return False
        if user.has_perm(required):
            return True
        self.message = f"This action needs the permission {required!r}."
        return False
