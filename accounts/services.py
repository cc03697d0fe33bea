"""Granting, changing and revoking instance memberships. The admin calls these.

Each announces the change inside its transaction (``accounts.events``), which the audit
log records as one event (``accounts.membership.*``, with the user, the role and the
namespaces; read by superusers only, like the membership pages, see ``audit.scoping``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import transaction

from accounts import events
from accounts.backends import forget_grants
from accounts.models import InstanceMembership


def _state(membership: InstanceMembership) -> dict[str, Any]:
    return {
        "role": membership.role,
        "all_namespaces": membership.all_namespaces,
        "namespaces": sorted(namespace.name for namespace in membership.namespaces.all()),
    }


def _changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    return {name: [before[name], after[name]] for name in before if before[name] != after[name]}


def grant_membership(
    *,
    user: Any,
    instance: Any,
    role: str,
    all_namespaces: bool = True,
    namespaces: Iterable[Any] = (),
    granted_by: Any = None,
) -> InstanceMembership:
    """Give ``user`` ``role`` on ``instance``: every namespace, or only ``namespaces``."""
    with transaction.atomic():
        membership = InstanceMembership.objects.create(
            user=user,
            instance=instance,
            role=role,
            all_namespaces=all_namespaces,
            granted_by=granted_by,
        )
        membership.namespaces.set(list(namespaces))
        events.membership_granted.send(
            sender=InstanceMembership,
            membership=membership,
            actor=granted_by,
            details={"user": user.get_username(), **_state(membership)},
        )
    forget_grants(user)
    return membership


def change_membership(
    *,
    membership: InstanceMembership,
    role: str,
    all_namespaces: bool,
    namespaces: Iterable[Any],
    actor: Any = None,
) -> InstanceMembership:
    """Change the role or the namespaces (the user and the instance stay: revoke and grant
    to move a membership). Records the fields that changed; no change, no event."""
    with transaction.atomic():
        locked = (
            InstanceMembership.objects.select_for_update(of=("self",))
            .select_related("user", "instance")
            .get(pk=membership.pk)
        )
        before = _state(locked)
        locked.role, locked.all_namespaces = role, all_namespaces
        locked.save(update_fields=["role", "all_namespaces"])
        locked.namespaces.set(list(namespaces))
        if changes := _changes(before, _state(locked)):
            events.membership_changed.send(
                sender=InstanceMembership,
                membership=locked,
                actor=actor,
                changes=changes,
                details={"user": locked.user.get_username()},
            )
    forget_grants(membership.user)
    return locked


def revoke_membership(*, membership: InstanceMembership, actor: Any = None) -> None:
    with transaction.atomic():
        # Announced before the row goes, so the event keeps its id and what it granted.
        events.membership_revoked.send(
            sender=InstanceMembership,
            membership=membership,
            actor=actor,
            details={"user": membership.user.get_username(), **_state(membership)},
        )
        membership.delete()
    forget_grants(membership.user)
