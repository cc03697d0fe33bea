"""One permission class for the KMS API: each view action needs one Django permission.

A view lists ``action_permissions = {"list": "kms.view_key", ...}``. Anonymous
requests get 401 (DRF answers 401 because authenticators are configured).
Superusers pass because ``User.has_perm`` grants them everything; ``is_staff``
alone grants nothing here. An action missing from the mapping is refused, so a
new action cannot become reachable by accident.
"""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request


class KmsActionPermission(BasePermission):
    message = "You do not have permission to perform this action."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        action = getattr(view, "action", None)
        if action is None:
            # No handler for this HTTP method: let the view answer 405.
            return True
        required = view.action_permissions.get(action)
        if required is None:
            self.message = f"The action {action!r} is not available."
            return False
        if user.has_perm(required):
            return True
        self.message = f"This action needs the permission {required!r}."
        return False
