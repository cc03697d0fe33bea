"""One permission class for the signing API: each view action needs its Django permissions.

A view lists ``action_permissions = {"list": "signing.view_signature", ...}``; a value
may be one permission or a tuple that must all be held. Anonymous requests get 401,
users without the permission 403; superusers have every permission. An action missing
from the mapping is refused, so a new action is never open by accident.
"""

from __future__ import annotations

from config.api import ActionPermission

SIGN = "signing.sign_images"
VIEW_POLICY = "signing.view_signingpolicy"
VIEW_SIGNATURE = "signing.view_signature"


# The signing API uses the project's one action-permission class (config.api).
SigningActionPermission = ActionPermission
