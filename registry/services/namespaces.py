"""Namespaces: the first path segment of a repository, grouping what an instance holds.

Created by hand (admin, API) or on the first push into them (``recording``); deleting one
deletes Signet's records of its repositories (never the images in the registry).
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from audit import services as audit
from registry.errors import NamespaceExists
from registry.models import Instance, Manifest, Namespace
from registry.services.handlers import call_handlers
from registry.services.instance_rules import field_errors, raise_if

logger = logging.getLogger(__name__)


def create_namespace(*, instance: Instance, name: str, description: str = "") -> Namespace:
    errors = field_errors(Namespace, {"name": name, "description": description})
    raise_if(errors)
    if Namespace.objects.filter(instance=instance, name=name).exists():
        raise NamespaceExists(
            f"Namespace {name!r} already exists in instance {instance.name}.", name=name
        )
    try:
        with transaction.atomic():
            namespace = Namespace.objects.create(
                instance=instance, name=name, description=description
            )
            audit_namespace_created(namespace, details={"description": description})
    except IntegrityError:
        raise NamespaceExists(
            f"Namespace {name!r} already exists in instance {instance.name}.", name=name
        ) from None
    logger.info("registry namespace created instance=%s name=%s", instance.name, name)
    return namespace


def audit_namespace_created(namespace: Namespace, *, details: dict[str, Any]) -> None:
    audit.record(
        "registry.namespace.created",
        obj=namespace,
        instance=namespace.instance,
        instance_name=namespace.instance.name,
        namespace_name=namespace.name,
        details=details,
    )


def update_namespace(*, namespace: Namespace, description: str) -> Namespace:
    raise_if(field_errors(Namespace, {"description": description}))
    namespace.description = description
    namespace.save(update_fields=["description"])
    return namespace


def delete_namespace(*, namespace: Namespace) -> None:
    """Delete a namespace's records (not the images in the registry)."""
    with transaction.atomic():
        manifests = list(
            Manifest.objects.filter(repository__namespace=namespace).select_related(
                "repository__namespace__instance"
            )
        )
        if manifests:
            call_handlers(
                settings.REGISTRY_DELETE_HANDLERS,
                instance=namespace.instance,
                manifests=manifests,
                source="namespace-delete",
                raise_errors=True,
            )
        # Recorded before the row goes (the event keeps its id), in the same transaction.
        audit.record(
            "registry.namespace.deleted",
            obj=namespace,
            instance=namespace.instance,
            instance_name=namespace.instance.name,
            namespace_name=namespace.name,
            details={
                "repositories": namespace.repositories.count(),
                "manifests": len(manifests),
                # Memberships narrowed to it lose it (those narrowed to it alone: all).
                "memberships_narrowed": namespace.memberships.count(),
            },
        )
        namespace.delete()
    logger.info(
        "registry namespace deleted instance=%s name=%s", namespace.instance.name, namespace.name
    )
