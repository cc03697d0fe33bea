"""``MembershipBackend``: Django permissions granted by instance memberships.

Listed in ``AUTHENTICATION_BACKENDS`` after ``ModelBackend`` (it authenticates nobody,
it only answers ``has_perm``), so ``user.has_perm(perm, obj)`` everywhere, including
DRF object permissions and the admin, sees the grants:

- ``obj`` None: True when any of the user's memberships has a role granting ``perm``
  (list endpoints and admin changelists open; their querysets are then scoped by
  ``accounts.scoping``);
- ``obj`` given: the object is resolved to its (instance, namespace) by the paths its
  app registered (``accounts.scopes``) and the membership for that instance must cover
  the namespace and grant ``perm``. KMS keys are not scoped: the permission alone decides.

Memberships are read once per user object (one request) and cached on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth.backends import BaseBackend

from accounts.roles import ROLE_PERMISSIONS
from accounts.scopes import UNSCOPED, locate

_CACHE = "_signet_memberships"


@dataclass(frozen=True)
class Grant:
    instance_id: int
    instance_name: str
    namespace_ids: frozenset[int]  # the namespaces of a narrowed membership
    perms: frozenset[str]
    namespace_names: frozenset[str]  # the names of ``namespace_ids``
    all_namespaces: bool  # False: only ``namespace_ids`` (possibly none)
    # When the instance was created: audit events recorded before the audit log stored
    # instance ids are matched by name, and only from then on (``audit.scoping``).
    instance_created_at: Any = None

    def covers(self, namespace_id: int | None) -> bool:
        return self.all_namespaces or namespace_id is None or (namespace_id in self.namespace_ids)


def grants_of(user: Any) -> list[Grant]:
    """The user's memberships (cached on the user object)."""
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return []
    cached = getattr(user, _CACHE, None)
    if cached is not None:
        return cached
    from accounts.models import InstanceMembership

    grants: list[Grant] = []
    memberships = (
        InstanceMembership.objects.filter(user_id=user.pk)
        .select_related("instance")
        .prefetch_related("namespaces")
    )
    for membership in memberships:
        chosen = membership.namespaces.all()
        # Fail closed on memberships made outside the admin form: a namespace of another
        # instance grants nothing (names are matched within the instance), and chosen
        # namespaces narrow the membership even if all_namespaces was left set.
        namespaces = [ns for ns in chosen if ns.instance_id == membership.instance_id]
        grants.append(
            Grant(
                instance_id=membership.instance_id,
                instance_name=membership.instance.name,
                namespace_ids=frozenset(ns.pk for ns in namespaces),
                perms=ROLE_PERMISSIONS.get(membership.role, frozenset()),
                namespace_names=frozenset(ns.name for ns in namespaces),
                all_namespaces=membership.all_namespaces and not chosen,
                instance_created_at=membership.instance.created_at,
            )
        )
    setattr(user, _CACHE, grants)
    return grants


def forget_grants(user: Any) -> None:
    """Drop the cached memberships (after granting or revoking on this user object)."""
    if user is not None and hasattr(user, _CACHE):
        delattr(user, _CACHE)


class MembershipBackend(BaseBackend):
    """Answers permission questions from instance memberships; authenticates nobody."""

    def authenticate(self, request: Any, **credentials: Any) -> None:
        return None

    def has_perm(self, user_obj: Any, perm: str, obj: Any = None) -> bool:
        grants = grants_of(user_obj)
        if not grants:
            return False
        if obj is None:
            return any(perm in grant.perms for grant in grants)
        where = locate(obj)
        if where is None:
            return False
        if where is UNSCOPED:
            return any(perm in grant.perms for grant in grants)
        assert isinstance(where, tuple)
        instance_id, namespace_id = where
        return any(
            grant.instance_id == instance_id and grant.covers(namespace_id) and perm in grant.perms
            for grant in grants
        )

    def has_module_perms(self, user_obj: Any, app_label: str) -> bool:
        prefix = f"{app_label}."
        return any(perm.startswith(prefix) for grant in grants_of(user_obj) for perm in grant.perms)

    def get_all_permissions(self, user_obj: Any, obj: Any = None) -> set[str]:
        if obj is not None:
            return {perm for perm in _all_perms() if self.has_perm(user_obj, perm, obj)}
        return {perm for grant in grants_of(user_obj) for perm in grant.perms}


def _all_perms() -> frozenset[str]:
    from accounts.roles import OPERATOR_PERMISSIONS

    return OPERATOR_PERMISSIONS
