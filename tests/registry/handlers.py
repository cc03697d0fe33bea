"""Push/delete handlers registered through settings in tests (what signing will plug in)."""

from __future__ import annotations

from typing import Any

from django.db import connection, transaction

from registry.models import InstanceDomain, Manifest, Tag

CALLS: list[dict[str, Any]] = []
COMMITTED: list[list[str]] = []


def reset() -> None:
    CALLS.clear()
    COMMITTED.clear()


def record_push(*, instance, manifests, tags, source) -> None:
    """Records what it saw, proves it runs inside the transaction, writes a row."""
    digests = [manifest.digest for manifest in manifests]
    CALLS.append(
        {
            "kind": "push",
            "instance": instance.name,
            "digests": digests,
            "tags": [(tag.repository.name, tag.name, tag.manifest.digest) for tag in tags],
            "source": source,
            "in_atomic_block": connection.in_atomic_block,
            "manifests_visible": Manifest.objects.filter(pk__in=[m.pk for m in manifests]).count(),
            "tags_visible": Tag.objects.filter(pk__in=[t.pk for t in tags]).count(),
        }
    )
    # A row written by the handler commits (or rolls back) with the push.
    InstanceDomain.objects.create(instance=instance, name=f"h{len(CALLS)}.handler.example")
    transaction.on_commit(lambda: COMMITTED.append(digests))


def record_delete(*, instance, manifests, source) -> None:
    CALLS.append(
        {
            "kind": "delete",
            "instance": instance.name,
            "digests": [manifest.digest for manifest in manifests],
            "source": source,
            "still_recorded": Manifest.objects.filter(pk__in=[m.pk for m in manifests]).count(),
        }
    )


def write_then_fail(*, instance, manifests, tags, source) -> None:
    InstanceDomain.objects.create(instance=instance, name="failing.handler.example")
    CALLS.append({"kind": "failed", "digests": [m.digest for m in manifests]})
    raise RuntimeError("handler bug")


def fail_delete(*, instance, manifests, source) -> None:
    raise RuntimeError("delete handler bug")
