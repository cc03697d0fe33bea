"""Audit records of instance creations, changes and deletions: never a secret.

``audit.services.clean`` drops every field whose name holds a word like secret, token or
password, so the credential's *source* is described under neutral names: ``env_variable``
(the variable's name, which is not secret) and ``stored_auth`` (whether a sealed
credential exists). A replaced credential shows as ``auth_replaced`` in ``details``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from audit import services as audit
from registry.models import Instance


def snapshot(instance: Instance) -> dict[str, Any]:
    """The instance's settings as an audit record shows them (no secret value)."""
    return {
        "region": instance.region,
        "description": instance.description,
        "backend_url": instance.backend_url,
        "auth_type": instance.auth_type,
        "username": instance.username,
        "env_variable": instance.secret_env,
        "stored_auth": instance.sealed_secret is not None,
        "default_domain": instance.default_domain,
        "custom_domains": sorted(
            instance.domains.filter(is_default=False).values_list("name", flat=True)
        ),
    }


def audit_instance_created(instance: Instance, *, custom_domains: Sequence[str]) -> None:
    """Record ``registry.instance.created`` with the new instance's settings (call inside the
    creating transaction)."""
    audit.record(
        "registry.instance.created",
        obj=instance,
        instance_name=instance.name,
        details={
            "region": instance.region,
            "backend_url": instance.backend_url,
            "auth_type": instance.auth_type,
            "username": instance.username,
            "default_domain": instance.default_domain,
            "custom_domains": custom_domains,
        },
    )


def audit_instance_updated(
    instance: Instance, before: dict[str, Any], *, secret_given: bool
) -> None:
    """Record ``registry.instance.updated`` when anything changed (call inside the change's
    transaction, after the domains are written)."""
    changes = audit.diff(before, snapshot(instance))
    if changes or secret_given:
        audit.record(
            "registry.instance.updated",
            obj=instance,
            instance_name=instance.name,
            changes=changes,
            details={"auth_replaced": secret_given},
        )


def audit_instance_deleted(instance: Instance) -> None:
    """Record ``registry.instance.deleted`` with the settings the instance had (call before
    deleting the row, inside the deleting transaction)."""
    audit.record(
        "registry.instance.deleted",
        obj=instance,
        instance_name=instance.name,
        changes={field: [value, None] for field, value in snapshot(instance).items()},
    )
