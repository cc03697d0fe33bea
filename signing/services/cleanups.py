"""Durable removal of published signature artifacts (a deleted policy or image)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone

from audit import services as audit
from config.errors import DomainError
from registry.models import Instance
from signing import artifacts
from signing.models import ArtifactCleanup, CleanupReason
from signing.restore import restore_records
from signing.services.failures import backoff, failure_reason

logger = logging.getLogger(__name__)


def queue_cleanups(
    instance: Instance, rows: Iterable[tuple[str, str, str]], reason: str
) -> list[int]:
    """Durable removal work for each (repository, digest, fingerprint)."""
    objs = [
        ArtifactCleanup(
            instance=instance,
            repository=repository,
            manifest_digest=digest,
            key_fingerprint=fingerprint,
            reason=reason,
        )
        for repository, digest, fingerprint in rows
    ]
    ArtifactCleanup.objects.bulk_create(objs, ignore_conflicts=True, batch_size=500)
    keys = {(o.repository, o.manifest_digest, o.key_fingerprint) for o in objs}
    if not keys:
        return []
    query = Q()
    for repository, digest, fingerprint in keys:
        query |= Q(repository=repository, manifest_digest=digest, key_fingerprint=fingerprint)
    if len(keys) > 500:  # too many to name one by one: the retry pass picks them up
        return list(ArtifactCleanup.objects.filter(instance=instance).values_list("id", flat=True))
    return list(
        ArtifactCleanup.objects.filter(query, instance=instance).values_list("id", flat=True)
    )


def _image_still_held(client, cleanup: ArtifactCleanup) -> bool:
    """A delete event only claims the image is gone: ask the registry before its signature
    goes. An image still there keeps its ``.sig`` (a forged or stale event), and Signet's
    records of it, which the event removed, are restored from the registry
    (``signing.restore``)."""
    if client.head_manifest(cleanup.repository, cleanup.manifest_digest) is None:
        return False
    logger.warning(
        "signature artifact kept %s@%s: the registry still holds the image the delete event named",
        cleanup.repository,
        cleanup.manifest_digest,
    )
    audit.record(
        "signing.artifact.kept",
        obj=None,
        object_repr=f"{cleanup.repository}@{cleanup.manifest_digest}",
        instance=cleanup.instance,
        namespace_name=cleanup.repository.split("/", 1)[0],
        details={
            "reason": "the registry still holds the image a delete event named; its "
            "signature stays, and Signet's records of the image, its tags and its "
            "signature are restored from the registry",
            "repository": cleanup.repository,
            "digest": cleanup.manifest_digest,
        },
    )
    restore_records(
        client,
        instance=cleanup.instance,
        repository=cleanup.repository,
        digest=cleanup.manifest_digest,
    )
    return True


def _paged(queryset: QuerySet, size: int) -> Iterable[Any]:
    """The rows by primary key, one complete read per page. Not ``.iterator()``: on SQLite
    its open statement keeps a read snapshot, and the first write after another
    connection commits fails at once with "database is locked"."""
    last = 0
    while page := list(queryset.filter(pk__gt=last).order_by("pk")[:size]):
        yield from page
        last = page[-1].pk


def run_cleanups(ids: Sequence[int] | None = None, *, now=None) -> tuple[int, int]:
    """Carry out queued artifact removals; returns (done, failed)."""
    now = now or timezone.now()
    queryset = ArtifactCleanup.objects.select_related("instance")
    if ids is not None:
        queryset = queryset.filter(pk__in=ids)
    else:
        queryset = queryset.filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
    done = failed = 0
    clients: dict[int, Any] = {}
    for cleanup in _paged(queryset, 200):
        try:
            client = clients.get(cleanup.instance_id) or cleanup.instance.registry_client()
            clients[cleanup.instance_id] = client
            if cleanup.reason == CleanupReason.IMAGE_DELETED and _image_still_held(client, cleanup):
                outcome = "kept"
            else:
                outcome = artifacts.remove(
                    client,
                    cleanup.repository,
                    cleanup.manifest_digest,
                    key_fingerprint=cleanup.key_fingerprint,
                )
        except (DomainError, ValueError) as exc:
            failed += 1
            attempts = cleanup.attempts + 1
            ArtifactCleanup.objects.filter(pk=cleanup.pk).update(
                attempts=attempts,
                last_error=failure_reason(exc)[1][:2000],
                next_attempt_at=timezone.now() + backoff(attempts),
            )
            logger.warning(
                "signature artifact removal failed (will retry): %s", failure_reason(exc)[1]
            )
            continue
        ArtifactCleanup.objects.filter(pk=cleanup.pk).delete()
        logger.info(
            "signature artifact %s %s@%s (%s)",
            outcome,
            cleanup.repository,
            cleanup.manifest_digest,
            cleanup.reason,
        )
        done += 1
    return done, failed
