"""How each scoped model reaches its registry instance and namespace.

The app that owns a model registers it from its ``AppConfig.ready()`` (``registry``,
``signing``, ``kms``), so ``accounts``, which sits below them, imports none of them. A
path leads from the model to the instance id (``"pk"`` for instances,
``"namespace__instance_id"``...) and, for rows that belong to one namespace, to the
namespace id; ``accounts.scoping`` filters querysets with them and
``accounts.backends`` follows them on one object. A model registered as unscoped belongs
to no instance (KMS keys): the permission alone decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
from typing import Any

from django.db import models


@dataclass(frozen=True)
class ScopePaths:
    instance_path: str
    namespace_path: str | None = None  # None: instance-wide rows


_PATHS: dict[type[models.Model], ScopePaths] = {}
_UNSCOPED: set[type[models.Model]] = set()
# What ``locate`` answers for an object of an unscoped model.
UNSCOPED = object()


def register(
    model: type[models.Model], *, instance_path: str, namespace_path: str | None = None
) -> None:
    """Scope ``model``'s rows by these paths (see the module docstring)."""
    _PATHS[model] = ScopePaths(instance_path, namespace_path)


def register_unscoped(model: type[models.Model]) -> None:
    """``model``'s rows belong to no instance: memberships grant its permissions on all."""
    _UNSCOPED.add(model)


def _registered(model: type) -> type[models.Model] | None:
    """The registered class ``model`` is (or inherits from), like ``isinstance``."""
    return next((cls for cls in model.__mro__ if cls in _PATHS or cls in _UNSCOPED), None)


def paths_of(model: type[models.Model]) -> ScopePaths:
    registered = _registered(model)
    if registered is None or registered not in _PATHS:
        raise KeyError(f"{model._meta.label} is not a scoped model (accounts.scopes.register).")
    return _PATHS[registered]


def _follow(obj: Any, path: str) -> Any:
    return reduce(getattr, path.split("__"), obj)


def locate(obj: Any) -> tuple[int, int | None] | object | None:
    """``(instance_id, namespace_id or None)`` of ``obj``; ``UNSCOPED`` for objects of an
    unscoped model; None for objects memberships know nothing of."""
    registered = _registered(type(obj))
    if registered is None:
        return None
    if registered in _UNSCOPED:
        return UNSCOPED
    paths = _PATHS[registered]
    namespace_id = None if paths.namespace_path is None else _follow(obj, paths.namespace_path)
    return (_follow(obj, paths.instance_path), namespace_id)
