"""Querysets a user may see: superusers everything, sub-accounts their memberships.

``scope(queryset, user, instance_path=..., namespace_path=...)`` keeps the rows of the
instances (and, for memberships narrowed to namespaces, the namespaces) the user holds
a membership on; with ``perm`` only memberships whose role grants it count. Rows
outside answer 404 because they are simply not in the queryset. Anonymous and
inactive users see nothing. Management commands run as administrators (no scoping).
"""

from __future__ import annotations

from typing import Any, TypeVar

from django.db import models
from django.db.models import Q, QuerySet

from accounts.backends import grants_of
from accounts.scopes import paths_of

_Q = TypeVar("_Q", bound=QuerySet)


def is_unscoped(user: Any) -> bool:
    return bool(user and user.is_active and user.is_superuser)


def scope_condition(
    user: Any,
    *,
    instance_path: str,
    namespace_path: str | None = None,
    perm: str | None = None,
) -> Q | None:
    """The filter ``scope`` applies: None when ``user`` sees every row (a superuser),
    otherwise a ``Q`` (matching nothing for a user without memberships). Usable in
    ``annotate`` to mark, rather than drop, the rows a user may act on."""
    if is_unscoped(user):
        return None
    where = Q(pk__in=[])
    for grant in grants_of(user):
        if perm is not None and perm not in grant.perms:
            continue
        condition = Q(**{instance_path: grant.instance_id})
        if not grant.all_namespaces and namespace_path is not None:
            condition &= Q(**{f"{namespace_path}__in": sorted(grant.namespace_ids)})
        where |= condition
    return where


def scope(
    queryset: _Q,
    user: Any,
    *,
    instance_path: str,
    namespace_path: str | None = None,
    perm: str | None = None,
) -> _Q:
    """``queryset`` limited to the rows ``user`` may see.

    ``instance_path`` leads from the model to the instance id (``"pk"`` for instances,
    ``"namespace__instance_id"``...); ``namespace_path`` to the namespace id (None: the
    rows are instance-wide, visible with any membership on the instance). The audit log,
    which stores names, has its own rule (``audit.scoping``).
    """
    where = scope_condition(
        user, instance_path=instance_path, namespace_path=namespace_path, perm=perm
    )
    return queryset if where is None else queryset.filter(where)


def _membership_target(field: str) -> type[models.Model]:
    """The model a membership's ``field`` points at (registry's instance or namespace),
    known from ``accounts.models`` without importing ``registry``."""
    from accounts.models import InstanceMembership

    model = InstanceMembership._meta.get_field(field).related_model
    assert isinstance(model, type)
    return model


def visible_instances(user: Any, perm: str | None = None) -> QuerySet:
    instances = _membership_target("instance")._default_manager.all()
    return scope(instances, user, instance_path="pk", perm=perm)


def visible_namespaces(user: Any, perm: str | None = None) -> QuerySet:
    return scope(
        _membership_target("namespaces")._default_manager.all(),
        user,
        instance_path="instance_id",
        namespace_path="pk",
        perm=perm,
    )


def _paths(model: type[models.Model]) -> dict[str, Any]:
    paths = paths_of(model)
    return {"instance_path": paths.instance_path, "namespace_path": paths.namespace_path}


def scope_model(queryset: _Q, user: Any, *, perm: str | None = None) -> _Q:
    """``scope`` with the paths registered for ``queryset``'s model (``accounts.scopes``)."""
    return scope(queryset, user, perm=perm, **_paths(queryset.model))


def model_scope_condition(model: Any, user: Any, *, perm: str | None = None) -> Q | None:
    """``scope_condition`` with the paths registered for ``model`` (``accounts.scopes``)."""
    return scope_condition(user, perm=perm, **_paths(model))
