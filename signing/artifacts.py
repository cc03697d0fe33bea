"""Reading and writing cosign ``.sig`` artifacts in a registry (through the OCI client)."""

from __future__ import annotations

from collections.abc import Iterable

from registry.client import RegistryClient
from signing.payload import (
    OCI_MANIFEST_MEDIA_TYPE,
    SignatureLayer,
    build_signature_manifest,
    merge_layers,
    parse_signature_manifest,
    same_key_fingerprint,
    signature_tag,
)


def read_layers(client: RegistryClient, repository: str, digest: str) -> list[SignatureLayer]:
    """The signature layers beside ``digest``, blobs included; [] when there is none."""
    manifest = client.find_manifest(repository, signature_tag(digest))
    if manifest is None:
        return []
    return [
        SignatureLayer.from_entry(entry, client.get_blob(repository, entry.layer_digest))
        for entry in parse_signature_manifest(manifest.json)
    ]


def _write(
    client: RegistryClient,
    repository: str,
    digest: str,
    layers: list[SignatureLayer],
    *,
    present: Iterable[SignatureLayer] = (),
) -> str:
    """Put the ``.sig`` manifest of ``layers``. The blobs of ``present`` (layers just read
    from the registry's current artifact) are there; every other blob is uploaded without
    asking first (a new config, a new payload: an existence check is one more request).
    """
    manifest, _config, blobs = build_signature_manifest(layers)
    there = {layer.digest for layer in present}
    for blob_digest, blob in blobs.items():
        if blob_digest not in there:
            client.upload_blob(repository, blob, check_exists=False)
    return client.put_manifest(repository, signature_tag(digest), manifest, OCI_MANIFEST_MEDIA_TYPE)


def publish(
    client: RegistryClient,
    repository: str,
    digest: str,
    layer: SignatureLayer,
    *,
    drop_fingerprints: Iterable[str] = (),
) -> str:
    """Add ``layer`` to the image's ``.sig`` artifact; returns the artifact's digest.

    Another key's layers stay; this key's earlier layer is replaced, never duplicated;
    layers of ``drop_fingerprints`` (a replaced policy key) are removed.
    """
    dropped = set(drop_fingerprints) - {layer.key_fingerprint}
    current = read_layers(client, repository, digest)
    existing = [old for old in current if old.key_fingerprint not in dropped]
    layers = merge_layers(existing, [layer], same_key=same_key_fingerprint)
    return _write(client, repository, digest, layers, present=current)


def remove(
    client: RegistryClient, repository: str, digest: str, *, key_fingerprint: str = ""
) -> str:
    """Remove one key's layers (or, with no fingerprint, the whole artifact).

    Returns what happened: ``"absent"``, ``"deleted"`` (no layer left) or ``"rewritten"``.
    """
    tag = signature_tag(digest)
    current = client.head_manifest(repository, tag)
    if current is None:
        return "absent"
    layers = read_layers(client, repository, digest) if key_fingerprint else []
    kept = [layer for layer in layers if layer.key_fingerprint != key_fingerprint]
    if not kept:
        client.delete_manifest(repository, current.digest)
        return "deleted"
    _write(client, repository, digest, kept, present=layers)
    return "rewritten"
