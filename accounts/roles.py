"""The permissions each membership role grants (on its instance / namespaces only).

KMS key management (``kms.add_key``, ``kms.manage_key_state``, service authorizations)
is never granted by a membership: it stays a plain Django permission.
"""

from __future__ import annotations

from accounts.models import Role

READER_PERMISSIONS: frozenset[str] = frozenset(
    {
        "registry.view_instance",
        "registry.view_namespace",
        "registry.view_repository",
        "registry.view_tag",
        "registry.view_manifest",
        "signing.view_signingpolicy",
        "signing.view_signature",
        "kms.view_key",
        # The audit log of the membership's scope (``audit.scoping``).
        "audit.view_auditevent",
    }
)

OPERATOR_PERMISSIONS: frozenset[str] = READER_PERMISSIONS | {
    "signing.add_signingpolicy",
    "signing.change_signingpolicy",
    "signing.delete_signingpolicy",
    "signing.sign_images",
}

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    Role.READER: READER_PERMISSIONS,
    Role.OPERATOR: OPERATOR_PERMISSIONS,
}


def role_grants(role: str, perm: str) -> bool:
    return perm in ROLE_PERMISSIONS.get(role, frozenset())
