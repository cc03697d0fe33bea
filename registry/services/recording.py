"""Writing what the registry reports: pushes and deletes of manifests and tags, with the
namespaces and repositories they need, and the push and delete handlers
(``registry.services.handlers``) called in the same transaction.

``record_events`` records a webhook delivery; ``record_manifest`` one manifest a caller
fetched from the registry; ``registry.services.sync`` imports whole repositories through
the same ``Recorder``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError, RestrictedError
from django.utils import timezone

from audit import context as audit_context
from config.errors import ValidationFailed
from registry.models import (
    EventStatus,
    Instance,
    Manifest,
    ManifestReference,
    Namespace,
    RegistryEvent,
    Repository,
    Tag,
    TagHistory,
)
from registry.reference import DIGEST_RE, is_signature_tag, namespace_of
from registry.services.events import Event, Reference, parse_envelope
from registry.services.handlers import call_handlers
from registry.services.inserts import insert_missing
from registry.services.namespaces import audit_namespace_created

logger = logging.getLogger(__name__)


@dataclass
class RecordResult:
    received: int = 0
    processed: int = 0
    ignored: int = 0
    duplicates: int = 0
    namespaces_created: int = 0
    repositories_created: int = 0
    manifests_created: int = 0
    manifests_deleted: int = 0
    tags_created: int = 0
    tags_moved: int = 0
    tags_unchanged: int = 0
    tags_deleted: int = 0
    handler_errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class Recorder:
    """Writes pushes and deletes for one instance inside the caller's transaction."""

    def __init__(self, *, instance: Instance, source: str, result: RecordResult) -> None:
        self.instance = instance
        self.source = source
        self.result = result
        self.namespaces: dict[str, Namespace] = {}
        self.repositories: dict[str, Repository] = {}
        self.new_manifests: list[Manifest] = []
        self.changed_tags: list[Tag] = []

    # -- lookups ---------------------------------------------------------------------------

    def repository(self, name: str, *, create: bool) -> Repository | None:
        if name in self.repositories:
            return self.repositories[name]
        namespace_name = namespace_of(name)
        if namespace_name is None:
            return None
        repository = (
            Repository.objects.select_related("namespace__instance")
            .filter(namespace__instance=self.instance, name=name)
            .first()
        )
        if repository is None:
            if not create:
                return None
            namespace = self.namespaces.get(namespace_name)
            if namespace is None:
                namespace, created = Namespace.objects.get_or_create(
                    instance=self.instance, name=namespace_name
                )
                self.result.namespaces_created += int(created)
                if created:
                    # The actor is the webhook or the sync command (the audit context).
                    audit_namespace_created(
                        namespace, details={"source": self.source, "repository": name}
                    )
                self.namespaces[namespace_name] = namespace
            repository, created = Repository.objects.get_or_create(namespace=namespace, name=name)
            self.result.repositories_created += int(created)
            namespace.instance = self.instance
            repository.namespace = namespace
        self.repositories[name] = repository
        return repository

    # -- pushes ----------------------------------------------------------------------------

    def manifest(
        self,
        repository: Repository,
        *,
        digest: str,
        media_type: str,
        size: int | None,
        at: datetime,
        references: Sequence[Reference] = (),
    ) -> Manifest:
        manifest = Manifest(
            repository=repository, digest=digest, media_type=media_type, size=size, pushed_at=at
        )
        created = bool(insert_missing([manifest], unique=("repository", "digest")))
        if not created:
            manifest = Manifest.objects.get(repository=repository, digest=digest)
        manifest.repository = repository
        if created:
            self.result.manifests_created += 1
            self.new_manifests.append(manifest)
            # An index recorded earlier may be waiting for this child.
            ManifestReference.objects.filter(
                parent__repository=repository, child_digest=digest, child__isnull=True
            ).update(child=manifest)
        if manifest.is_index and references and (created or not manifest.child_references.exists()):
            self.link_children(manifest, references)
        return manifest

    def link_children(self, manifest: Manifest, references: Sequence[Reference]) -> None:
        digests = [reference.digest for reference in references]
        known = dict(
            Manifest.objects.filter(repository=manifest.repository, digest__in=digests).values_list(
                "digest", "pk"
            )
        )
        ManifestReference.objects.bulk_create(
            [
                ManifestReference(
                    parent=manifest,
                    child_id=known.get(reference.digest),
                    child_digest=reference.digest,
                    media_type=reference.media_type,
                    size=reference.size,
                    platform=reference.platform,
                )
                for reference in references
            ],
            ignore_conflicts=True,
        )

    def tag(self, repository: Repository, manifest: Manifest, name: str, at: datetime) -> None:
        tag = Tag(repository=repository, name=name, manifest=manifest, pushed_at=at, updated_at=at)
        if insert_missing([tag], unique=("repository", "name")):
            TagHistory.objects.create(tag=tag, to_digest=manifest.digest, moved_at=at)
            self.result.tags_created += 1
            self.changed_tags.append(tag)
            return
        # The tag exists (or a concurrent delivery has just committed it): lock it to move it.
        tag = (
            Tag.objects.select_for_update(of=("self",))
            .select_related("manifest")
            .get(repository=repository, name=name)
        )
        if tag.manifest_id == manifest.pk:
            self.result.tags_unchanged += 1
            return
        previous = tag.manifest.digest
        tag.manifest = manifest
        tag.updated_at = max(at, tag.pushed_at)
        tag.save(update_fields=["manifest", "updated_at"])
        TagHistory.objects.create(
            tag=tag, from_digest=previous, to_digest=manifest.digest, moved_at=tag.updated_at
        )
        tag.repository = repository
        self.result.tags_moved += 1
        self.changed_tags.append(tag)

    def flush_push_handlers(self) -> None:
        if not (self.new_manifests or self.changed_tags):
            return
        manifests, tags = self.new_manifests, self.changed_tags
        self.new_manifests, self.changed_tags = [], []
        if settings.REGISTRY_PUSH_HANDLERS:
            self.result.handler_errors += call_handlers(
                settings.REGISTRY_PUSH_HANDLERS,
                instance=self.instance,
                manifests=manifests,
                tags=tags,
                source=self.source,
            )

    # -- deletes ---------------------------------------------------------------------------

    def delete_manifest(self, repository_name: str, digest: str) -> str:
        repository = self.repository(repository_name, create=False)
        manifest = (
            Manifest.objects.filter(repository=repository, digest=digest).first()
            if repository
            else None
        )
        if manifest is None or repository is None:
            return "not recorded in Signet"
        manifest.repository = repository
        self.flush_push_handlers()  # handlers see pushes before a later delete
        tags = manifest.tags.count()
        try:
            with transaction.atomic():
                call_handlers(
                    settings.REGISTRY_DELETE_HANDLERS,
                    instance=self.instance,
                    manifests=[manifest],
                    source=self.source,
                    raise_errors=True,
                )
                manifest.delete()
        except (ProtectedError, RestrictedError) as exc:
            logger.warning(
                "registry manifest %s@%s not deleted: still referenced (%s)",
                repository_name,
                digest,
                type(exc).__name__,
            )
            return "IGNORED:still referenced by other records"
        self.result.manifests_deleted += 1
        self.result.tags_deleted += tags
        return ""

    def delete_tag(self, repository_name: str, tag: str) -> str:
        repository = self.repository(repository_name, create=False)
        if repository is None:
            return "not recorded in Signet"
        deleted = (
            Tag.objects.filter(repository=repository, name=tag).delete()[1].get(Tag._meta.label, 0)
        )
        if not deleted:
            return "not recorded in Signet"
        self.result.tags_deleted += deleted
        return ""


def _ignore_reason(event: Event) -> str:
    if event.action not in ("push", "delete"):
        return f"{event.action} events are not recorded"
    if event.tag and is_signature_tag(event.tag):
        return "signature artifact tag"
    if event.action == "push" and not event.is_manifest:
        return f"not a manifest ({event.media_type or 'no media type'})"
    if namespace_of(event.repository) is None:
        return "repository is not inside a valid namespace"
    return ""


def _apply(recorder: Recorder, event: Event, received: datetime) -> tuple[str, str]:
    """Record one event; returns (status, reason)."""
    reason = _ignore_reason(event)
    if reason:
        return EventStatus.IGNORED, reason
    if event.action == "push":
        repository = recorder.repository(event.repository, create=True)
        assert repository is not None
        at = event.timestamp or received
        before = (
            recorder.result.manifests_created,
            recorder.result.tags_created,
            recorder.result.tags_moved,
        )
        manifest = recorder.manifest(
            repository,
            digest=event.digest,
            media_type=event.media_type,
            size=event.size,
            at=at,
            references=event.references,
        )
        if event.tag:
            recorder.tag(repository, manifest, event.tag, at)
        after = (
            recorder.result.manifests_created,
            recorder.result.tags_created,
            recorder.result.tags_moved,
        )
        return EventStatus.PROCESSED, "" if after != before else "already recorded"
    if event.digest:
        outcome = recorder.delete_manifest(event.repository, event.digest)
    else:
        outcome = recorder.delete_tag(event.repository, event.tag)
    if outcome.startswith("IGNORED:"):
        return EventStatus.IGNORED, outcome.removeprefix("IGNORED:")
    return EventStatus.PROCESSED, outcome


def record_events(*, instance: Instance, envelope: Any) -> RecordResult:
    """Record a notification delivery: validate everything, then write it in one transaction.

    Idempotent per event id (a redelivered event is counted in ``duplicates``) and per
    (repository, digest, tag). Makes no call to the registry or the KMS.
    """
    events = parse_envelope(envelope)
    for attempt in range(3):
        try:
            with audit_context.registry_webhook(instance.name):
                return _record(instance=instance, events=events)
        except IntegrityError:
            # A concurrent delivery of the same events won a unique constraint: run again,
            # now seeing its rows (they are duplicates or already recorded).
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _record(*, instance: Instance, events: Sequence[Event]) -> RecordResult:
    result = RecordResult(received=len(events))
    if all(_ignore_reason(event) for event in events):
        # Nothing to apply (such as the push of a .sig Signet has just published: one per
        # image signed, queued at the registry with the pushes): one INSERT, no transaction.
        _record_events(instance, events, result)
    else:
        with transaction.atomic():
            _record_events(instance, events, result)
    logger.info(
        "registry events instance=%s received=%s processed=%s ignored=%s duplicates=%s",
        instance.name,
        result.received,
        result.processed,
        result.ignored,
        result.duplicates,
    )
    return result


def _record_events(instance: Instance, events: Sequence[Event], result: RecordResult) -> None:
    """The event rows first, in one statement whose unique event id leaves out redelivered
    ones (no separate look-up: the registry waits for each answer before sending the next
    event); then each new event applied, and the few rows whose outcome is not the one
    assumed (processed, or ignored for a reason known up front) corrected."""
    received = timezone.now()
    rows = [_event_row(instance, event, *_assumed_outcome(event)) for event in events]
    inserted = {id(row) for row in insert_missing(rows, unique=("instance", "event_id"))}
    recorder = Recorder(instance=instance, source="webhook", result=result)
    corrections: dict[tuple[str, str], list[int]] = {}
    for event, row in zip(events, rows, strict=True):
        if id(row) not in inserted:
            result.duplicates += 1
            continue
        status, reason = _apply(recorder, event, received)
        if status == EventStatus.IGNORED:
            result.ignored += 1
        else:
            result.processed += 1
        if (status, reason[:255]) != (row.status, row.reason):
            corrections.setdefault((status, reason[:255]), []).append(row.pk)
    recorder.flush_push_handlers()
    for (status, reason), pks in corrections.items():
        RegistryEvent.objects.filter(pk__in=pks).update(status=status, reason=reason)


def _assumed_outcome(event: Event) -> tuple[str, str]:
    reason = _ignore_reason(event)
    return (EventStatus.IGNORED, reason) if reason else (EventStatus.PROCESSED, "")


def _event_row(instance: Instance, event: Event, status: str, reason: str) -> RegistryEvent:
    return RegistryEvent(
        instance=instance,
        event_id=event.id,
        action=event.action,
        repository=event.repository,
        digest=event.digest if DIGEST_RE.fullmatch(event.digest) else "",
        tag=event.tag,
        media_type=event.media_type,
        occurred_at=event.timestamp,
        status=status,
        reason=reason[:255],
    )


def record_manifest(
    *, instance: Instance, repository: str, digest: str, media_type: str, size: int | None
) -> Manifest:
    """Record one manifest the caller has just fetched (and verified) from the registry,
    with its repository and namespace if Signet had forgotten them; push handlers are
    called with ``source="sync"`` (nothing is signed by this)."""
    with transaction.atomic():
        recorder = Recorder(instance=instance, source="sync", result=RecordResult())
        record = recorder.repository(repository, create=True)
        if record is None:
            raise ValidationFailed(
                f"{repository} is not inside a valid namespace.",
                fields={"repository": ["is not inside a valid namespace."]},
            )
        manifest = recorder.manifest(
            record, digest=digest, media_type=media_type, size=size, at=timezone.now()
        )
        recorder.flush_push_handlers()
    return manifest
