"""Importing from the registry what Signet has not recorded: images pushed before Signet
was attached, or whose events were lost (``manage.py sync_registry``), and one
repository again on request (``resync_repository``).

Registry calls happen outside transactions; each repository is written in its own
transaction through the ``Recorder`` the webhook uses, with ``source="sync"``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from config.errors import ValidationFailed
from registry.client import RegistryClient
from registry.errors import RegistryError
from registry.models import Instance, Manifest
from registry.reference import DIGEST_RE, INDEX_TYPES, NAMESPACE_RE, is_signature_tag, namespace_of
from registry.services.events import Reference, parse_index_children
from registry.services.recording import Recorder, RecordResult


@dataclass
class SyncResult:
    repositories: int = 0
    repositories_skipped: int = 0
    namespaces_created: int = 0
    repositories_created: int = 0
    manifests_created: int = 0
    tags_created: int = 0
    tags_updated: int = 0
    tags_unchanged: int = 0
    tags_ignored: int = 0
    handler_errors: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _RemoteTag:
    name: str
    digest: str
    media_type: str
    size: int | None
    children: tuple[Reference, ...] = ()


def _index_children(client: RegistryClient, repository: str, digest: str) -> tuple[Reference, ...]:
    return parse_index_children(client.get_manifest(repository, digest).json)


def _remote_tags(
    client: RegistryClient, instance: Instance, repository: str, page_size: int, result: SyncResult
) -> list[_RemoteTag]:
    remote: list[_RemoteTag] = []
    known_indexes = set(
        Manifest.objects.filter(
            repository__namespace__instance=instance,
            repository__name=repository,
            media_type__in=INDEX_TYPES,
            child_references__isnull=False,
        ).values_list("digest", flat=True)
    )
    for name in client.list_tags(repository, page_size=page_size):
        if is_signature_tag(name):
            result.tags_ignored += 1
            continue
        try:
            ref = client.head_manifest(repository, name)
            if ref is None:
                continue  # deleted between listing and HEAD
            children: tuple[Reference, ...] = ()
            if ref.media_type in INDEX_TYPES and ref.digest not in known_indexes:
                children = _index_children(client, repository, ref.digest)
                known_indexes.add(ref.digest)
        except RegistryError as exc:
            result.errors.append(f"{repository}:{name}: {exc.message}")
            continue
        if not DIGEST_RE.fullmatch(ref.digest or ""):
            result.errors.append(f"{repository}:{name}: unsupported digest {ref.digest!r}")
            continue
        remote.append(
            _RemoteTag(
                name=name,
                digest=ref.digest,
                media_type=ref.media_type,
                size=ref.size,
                children=children,
            )
        )
    return remote


def _record_remote(
    instance: Instance, repository_name: str, remote: Sequence[_RemoteTag], result: SyncResult
) -> None:
    counts = RecordResult()
    now = timezone.now()
    with transaction.atomic():
        recorder = Recorder(instance=instance, source="sync", result=counts)
        repository = recorder.repository(repository_name, create=True)
        assert repository is not None
        for item in remote:
            for child in item.children:
                recorder.manifest(
                    repository,
                    digest=child.digest,
                    media_type=child.media_type,
                    size=child.size,
                    at=now,
                )
            manifest = recorder.manifest(
                repository,
                digest=item.digest,
                media_type=item.media_type,
                size=item.size,
                at=now,
                references=item.children,
            )
            recorder.tag(repository, manifest, item.name, now)
        recorder.flush_push_handlers()
    result.namespaces_created += counts.namespaces_created
    result.repositories_created += counts.repositories_created
    result.manifests_created += counts.manifests_created
    result.tags_created += counts.tags_created
    result.tags_updated += counts.tags_moved
    result.tags_unchanged += counts.tags_unchanged
    result.handler_errors += counts.handler_errors


def sync_instance(
    *,
    instance: Instance,
    namespace: str | None = None,
    page_size: int = 100,
    dry_run: bool = False,
    progress: Callable[[str], None] | None = None,
    client: RegistryClient | None = None,
) -> SyncResult:
    """Import repositories, tags and manifests the registry has and Signet does not.

    Walks ``/v2/_catalog`` -> tags -> ``HEAD`` manifest (``GET`` for new indexes, to
    record their children). Tags that point elsewhere are moved (with history); nothing
    is deleted. Safe to run again: a second run changes nothing. Registry calls happen
    outside transactions; each repository is written in its own transaction. Push
    handlers are called with ``source="sync"``. Raises a ``registry.errors.RegistryError``
    naming the registry when it cannot be reached at all.
    """
    if namespace is not None and not NAMESPACE_RE.fullmatch(namespace):
        message = "is not a valid namespace name."
        raise ValidationFailed(f"namespace: {message}", fields={"namespace": [message]})
    result = SyncResult()
    say = progress or (lambda message: None)
    client = client or instance.registry_client()
    client.ping()
    # No transaction is held while talking to the registry. A dry run records each
    # repository in a short transaction it rolls back, so (on SQLite especially) writers
    # are never blocked for the length of a catalog walk.
    for repository in client.catalog(page_size=page_size):
        if namespace is not None and namespace_of(repository) != namespace:
            continue
        if namespace_of(repository) is None:
            result.repositories_skipped += 1
            say(f"skip {repository}: not inside a valid namespace")
            continue
        result.repositories += 1
        try:
            remote = _remote_tags(client, instance, repository, page_size, result)
        except RegistryError as exc:
            result.errors.append(f"{repository}: {exc.message}")
            say(f"error {repository}: {exc.message}")
            continue
        if not remote:
            say(f"[{result.repositories}] {repository}: no tags")
            continue
        before = (result.tags_created, result.tags_updated, result.tags_unchanged)
        if dry_run:
            with transaction.atomic():
                _record_remote(instance, repository, remote, result)
                transaction.set_rollback(True)
        else:
            _record_remote(instance, repository, remote, result)
        say(
            f"[{result.repositories}] {repository}: {len(remote)} tag(s), "
            f"{result.tags_created - before[0]} created, "
            f"{result.tags_updated - before[1]} updated, "
            f"{result.tags_unchanged - before[2]} unchanged"
        )
    return result


def resync_repository(
    *, instance: Instance, repository: str, client: RegistryClient | None = None
) -> SyncResult:
    """Import one repository's tags and manifests again from the registry, e.g. after a
    delete event the registry did not confirm removed Signet's records of a present image.
    Push handlers are called with ``source="sync"`` (nothing is signed by this)."""
    result = SyncResult(repositories=1)
    client = client or instance.registry_client()
    remote = _remote_tags(client, instance, repository, 100, result)
    if remote:
        _record_remote(instance, repository, remote, result)
    return result
