"""Bring Signet's record of a manifest in line with what the registry holds.

A push event only *claims* a media type, a size and, for an index, a list of children.
Before Signet signs an image it fetches the manifest by digest (the registry is the
source of truth) and corrects its record here, so what it signs next (an index's
children) comes from the fetched bytes, never from the event.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import transaction

from registry.models import Manifest, ManifestReference
from registry.reference import INDEX_TYPES, RECORDED_MANIFEST_TYPES
from registry.services.events import Reference


def reconcile_manifest(
    *, manifest: Manifest, media_type: str, size: int, children: Sequence[Reference] = ()
) -> list[Manifest]:
    """Record the fetched media type and size and, for an index, exactly its fetched children.

    Children Signet has not recorded yet are created (the registry holds them: it refuses
    an index whose children it lacks); references the fetched index does not list are
    dropped. Returns the child manifests, in the index's order.
    """
    recorded_as_index = manifest.media_type in INDEX_TYPES
    if (
        media_type not in INDEX_TYPES
        and not recorded_as_index
        and ((manifest.media_type, manifest.size) == (media_type, size))
    ):
        return []  # the common case: the record already agrees, nothing to write
    with transaction.atomic():
        if (manifest.media_type, manifest.size) != (media_type, size):
            Manifest.objects.filter(pk=manifest.pk).update(media_type=media_type, size=size)
            manifest.media_type, manifest.size = media_type, size
        if media_type not in INDEX_TYPES:
            if recorded_as_index:  # only an index has references to drop
                ManifestReference.objects.filter(parent=manifest).delete()
            return []
        wanted = {child.digest: child for child in children}
        ManifestReference.objects.filter(parent=manifest).exclude(
            child_digest__in=list(wanted)
        ).delete()
        recorded = _record_child_manifests(manifest, wanted)
        _record_references(manifest, wanted, recorded)
    return [recorded[digest] for digest in wanted if digest in recorded]


def _record_child_manifests(
    manifest: Manifest, wanted: dict[str, Reference]
) -> dict[str, Manifest]:
    """Create the children not recorded yet; return every recorded child by digest."""
    Manifest.objects.bulk_create(
        [
            Manifest(
                repository_id=manifest.repository_id,
                digest=child.digest,
                media_type=child.media_type,
                size=child.size,
                pushed_at=manifest.pushed_at,
            )
            for child in wanted.values()
            if child.media_type in RECORDED_MANIFEST_TYPES
        ],
        ignore_conflicts=True,
    )
    return {
        child.digest: child
        for child in Manifest.objects.select_related("repository__namespace").filter(
            repository_id=manifest.repository_id, digest__in=list(wanted)
        )
    }


def _record_references(
    manifest: Manifest, wanted: dict[str, Reference], recorded: dict[str, Manifest]
) -> None:
    """Create the missing references and point every reference at its recorded child."""
    ManifestReference.objects.bulk_create(
        [
            ManifestReference(
                parent=manifest,
                child=recorded.get(child.digest),
                child_digest=child.digest,
                media_type=child.media_type,
                size=child.size,
                platform=child.platform,
            )
            for child in wanted.values()
        ],
        ignore_conflicts=True,
    )
    for digest, child in recorded.items():
        ManifestReference.objects.filter(parent=manifest, child_digest=digest).exclude(
            child=child
        ).update(child=child)
