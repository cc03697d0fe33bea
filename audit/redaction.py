"""Fields of an event's ``changes`` and ``details`` that only some viewers may see.

``AUDIT_RESTRICTED_FIELDS`` maps an object type to the permission a viewer needs and the
keys hidden from the others: a reader of an instance sees that its settings changed, but
not where or as whom Signet reaches the registry (``backend_url``, ``username``, the
name of the credential's environment variable); those are for the instance's editors.
``audit`` names the permission as text and imports no app.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings

HIDDEN = "[hidden: needs {permission}]"


def visible(object_type: str, payload: Any, user: Any) -> Any:
    """``payload`` (``changes`` or ``details``) as ``user`` may see it."""
    rule = settings.AUDIT_RESTRICTED_FIELDS.get(object_type)
    if not rule or not isinstance(payload, Mapping) or user.has_perm(rule["permission"]):
        return payload
    hidden = HIDDEN.format(permission=rule["permission"])
    return {key: hidden if key in rule["fields"] else value for key, value in payload.items()}
