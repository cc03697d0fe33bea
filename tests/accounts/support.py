"""Grant helpers shared by the tests of every app: memberships are how sub-accounts see
registry instances (``accounts.InstanceMembership``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from accounts.backends import forget_grants
from accounts.models import InstanceMembership, Role


def grant(
    user: Any,
    instance: Any,
    role: str = Role.OPERATOR,
    namespaces: Iterable[Any] = (),
) -> InstanceMembership:
    """Give ``user`` ``role`` on ``instance`` (every namespace, or only ``namespaces``)."""
    namespaces = list(namespaces)
    membership, _ = InstanceMembership.objects.update_or_create(
        user=user,
        instance=instance,
        defaults={"role": role, "all_namespaces": not namespaces},
    )
    membership.namespaces.set(namespaces)
    forget_grants(user)
    return membership
