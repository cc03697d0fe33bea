"""Helpers for the audit tests (fixtures are in conftest.py)."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from django.utils import timezone

from audit.models import AuditEvent
from registry import services as registry_services
from registry.client import OCI_MANIFEST
from registry.models import Instance, Manifest
from tests.factories import token_client  # noqa: F401  (tests import it from here)

DOMAIN = "registry.audit.test"
NAMESPACE = "team"
REPOSITORY = "team/app"
EVENTS_TYPE = "application/vnd.docker.distribution.events.v1+json"


def events(action: str | None = None, **filters: Any) -> list[AuditEvent]:
    queryset = AuditEvent.objects.order_by("id")
    if action:
        queryset = queryset.filter(action=action)
    return list(queryset.filter(**filters))


def actions() -> list[str]:
    return list(AuditEvent.objects.order_by("id").values_list("action", flat=True))


def the_event(action: str) -> AuditEvent:
    """The one event with this action (fails when there are none or several)."""
    found = events(action)
    assert len(found) == 1, f"{action}: {len(found)} events ({actions()})"
    return found[0]


def fake_digest(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


def push_event(
    repository: str, digest: str, *, tag: str | None = None, size: int = 401
) -> dict[str, Any]:
    target: dict[str, Any] = {
        "repository": repository,
        "mediaType": OCI_MANIFEST,
        "digest": digest,
        "size": size,
    }
    if tag:
        target["tag"] = tag
    return {
        "id": str(uuid.uuid4()),
        "timestamp": timezone.now().isoformat().replace("+00:00", "Z"),
        "action": "push",
        "target": target,
        "request": {"method": "PUT", "useragent": "tests"},
        "actor": {},
        "source": {"addr": "127.0.0.1:5000"},
    }


def record_push(instance: Instance, repository: str, tag: str, digest: str) -> Manifest:
    """Record a push notification (no registry call): the manifest Signet then knows."""
    registry_services.record_events(
        instance=instance, envelope={"events": [push_event(repository, digest, tag=tag)]}
    )
    return Manifest.objects.select_related("repository__namespace").get(
        repository__namespace__instance=instance, digest=digest
    )
