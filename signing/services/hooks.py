"""What the registry app calls on pushes and deletes (``REGISTRY_*_HANDLERS`` in settings)."""

from __future__ import annotations

from registry.models import Instance
from registry.services.inserts import insert_missing
from signing.models import CleanupReason, Signature, SigningPolicy, Trigger
from signing.services.cleanups import queue_cleanups
from signing.services.worker import (
    after_commit,
    ensure_pending,
    remove_artifacts_after_commit,
    sign_signatures,
)


def on_manifests_pushed(*, instance: Instance, manifests, tags, source: str) -> None:
    """REGISTRY_PUSH_HANDLERS entry: pending signatures for pushes into signed namespaces.

    Runs inside the transaction that records the push, so the pending rows commit with
    it; the signing itself starts after commit, off the webhook's request path. Images
    imported by ``sync_registry`` are existing images: they are signed on demand only.
    """
    if source != "webhook":
        return
    by_id = {manifest.pk: manifest for manifest in manifests}
    for tag in tags:
        by_id.setdefault(tag.manifest_id, tag.manifest)
    # An index's children are not taken from the event's references: the worker signs
    # them once it has fetched the index itself from the registry (worker._pending_children).
    if not by_id:
        return
    namespace_ids = {m.repository.namespace_id for m in by_id.values()}
    policies = {
        p.namespace_id: p
        for p in SigningPolicy.objects.filter(namespace_id__in=namespace_ids, disabled=False)
    }
    wanted = [
        (policies[m.repository.namespace_id], m)
        for m in by_id.values()
        if m.repository.namespace_id in policies
    ]
    if not wanted:
        return
    # Manifests this delivery created have no signature row yet: one INSERT returning the
    # ids instead of ensure_pending's insert, look-up and update (the webhook's time per
    # push paces the registry's deliveries). Anything it leaves out takes the full path.
    created = {manifest.pk for manifest in manifests}
    fresh = insert_missing(
        [
            Signature(policy=p, manifest=m, trigger=Trigger.PUSH)
            for p, m in wanted
            if m.pk in created
        ],
        unique=("policy", "manifest"),
    )
    inserted = {(row.policy_id, row.manifest_id) for row in fresh}
    rest = [(p, m) for p, m in wanted if (p.pk, m.pk) not in inserted]
    ids = [row.pk for row in fresh] + ensure_pending(rest, trigger=Trigger.PUSH, actor=None)
    after_commit(sign_signatures, ids)


def on_manifests_deleted(*, instance: Instance, manifests, source: str) -> None:
    """REGISTRY_DELETE_HANDLERS entry: an image deleted takes its signatures with it."""
    # By id through a subquery-free IN of modest size: a namespace delete can pass many.
    manifest_ids = [manifest.pk for manifest in manifests]
    if len(manifest_ids) > 5000:
        namespace_ids = {manifest.repository.namespace_id for manifest in manifests}
        signatures = Signature.objects.filter(manifest__repository__namespace_id__in=namespace_ids)
    else:
        signatures = Signature.objects.filter(manifest_id__in=manifest_ids)
    if source == "webhook":
        rows = signatures.values_list("manifest__repository__name", "manifest__digest").distinct()
        # The image is gone: its whole .sig artifact goes too (fingerprint "").
        ids = queue_cleanups(instance, ((r, d, "") for r, d in rows), CleanupReason.IMAGE_DELETED)
    else:
        # Only Signet's records go (namespace deleted); the images stay in the registry, and
        # so do the signatures other keys made: remove only the layers Signet published.
        published = (
            signatures.exclude(sig_manifest_digest="")
            .values_list("manifest__repository__name", "manifest__digest", "key_fingerprint")
            .distinct()
        )
        ids = queue_cleanups(instance, published, CleanupReason.POLICY_DELETED)
    remove_artifacts_after_commit(ids)
