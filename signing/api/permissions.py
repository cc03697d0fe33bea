"""One permission class for the signing API: each view action needs its Django permissions.

A view lists ``action_permissions = {"list": "signing.view_signature", ...}``; a value
may be one permission or a tuple that must all be held. Anonymous requests get 401,
users without the permission 403; superusers have every permission. An action missing
from the mapping is refused, so a new action is never open by accident.
"""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

SIGN = "signing.sign_images"
VIEW_POLICY = "signing.view_signingpolicy"
VIEW_SIGNATURE = "signing.view_signature"


class SigningActionPermission(BasePermission):
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
        needed = (required,) if isinstance(required, str) else tuple(required)
        missing = [perm for perm in needed if not user.has_perm(perm)]
        if not missing:
            return True
        self.message = f"This action needs the permission {missing[0]!r}."
        return False
