"""Reads of what Signet recorded from its registries (the services write)."""

from __future__ import annotations

from django.db.models import QuerySet

from registry.errors import InstanceNotFound
from registry.models import Instance, Manifest, Tag


def get_instance(*, name: str) -> Instance:
    """The instance called ``name``; ``InstanceNotFound`` otherwise."""
    instance = Instance.objects.filter(name=name).first() if isinstance(name, str) else None
    if instance is None:
        raise InstanceNotFound(f"No registry instance named {str(name)[:60]!r} exists.")
    return instance


def tags_queryset() -> QuerySet[Tag]:
    return Tag.objects.select_related("repository__namespace__instance", "manifest")


def manifests_queryset() -> QuerySet[Manifest]:
    return Manifest.objects.select_related("repository__namespace__instance")
