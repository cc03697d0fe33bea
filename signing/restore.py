"""Put back what a forged (or stale) delete event made Signet forget.

The registry still holds the image, and its ``.sig`` stayed (``run_cleanups`` asked the
registry before removing it). The event, though, removed Signet's records: the image,
its tags and its signature rows. Without them a later policy deletion could not find,
and so could not remove, the signature it is meant to revoke. This module re-records
them from the registry: the tags, the image by digest (tagged or not), and a signature
row for each layer of the ``.sig`` that a known key made and still verifies. Nothing is
signed again: a disabled policy, a disabled key or a KMS outage change nothing here.
"""

from __future__ import annotations

import base64
import binascii
import logging

from django.db import IntegrityError, transaction
from django.utils import timezone

from kms import crypto
from kms.models import Key
from registry import services as registry_services
from registry.client import RegistryClient
from registry.models import Instance, Manifest
from registry.reconcile import reconcile_manifest
from signing import artifacts
from signing.models import Signature, SignatureStatus, SigningPolicy, Trigger
from signing.payload import InvalidPayload, SignatureLayer, parse_payload, signature_tag
from signing.subjects import fetch_subject

logger = logging.getLogger(__name__)

ALGORITHM = "RSA_PKCS1_SHA_256"


def restore_records(
    client: RegistryClient, *, instance: Instance, repository: str, digest: str
) -> Signature | None:
    """Re-record the image and its signature row; the row, or None when there is none to
    restore (no policy for the namespace, or no layer a known key made)."""
    registry_services.resync_repository(instance=instance, repository=repository, client=client)
    subject = fetch_subject(client, repository, digest)
    manifest = registry_services.record_manifest(
        instance=instance,
        repository=repository,
        digest=digest,
        media_type=subject.media_type,
        size=subject.size,
    )
    reconcile_manifest(
        manifest=manifest,
        media_type=subject.media_type,
        size=subject.size,
        children=subject.children,
    )
    policy = (
        SigningPolicy.objects.select_related("key")
        .filter(namespace_id=manifest.repository.namespace_id)
        .first()
    )
    if policy is None:
        return None
    layer, key = _layer_to_record(client, manifest, policy)
    sig = client.head_manifest(repository, signature_tag(digest))
    if layer is None or key is None or sig is None:
        return None
    return _record_signature(policy, manifest, layer, key, sig.digest)


def _layer_to_record(
    client: RegistryClient, manifest: Manifest, policy: SigningPolicy
) -> tuple[SignatureLayer | None, Key | None]:
    """The layer of the policy's key if there is one, else of another known key: only a
    layer whose signature verifies with that key's public key over its payload, and whose
    payload names this digest (a planted layer is not taken for Signet's)."""
    candidates: list[tuple[SignatureLayer, Key]] = []
    layers = artifacts.read_layers(client, manifest.repository.name, manifest.digest)
    fingerprints = {layer.key_fingerprint for layer in layers if layer.key_fingerprint}
    keys = {
        key.public_key_fingerprint: key
        for key in Key.objects.filter(public_key_fingerprint__in=fingerprints).defer(
            "sealed_private_key"
        )
    }
    for layer in layers:
        key = keys.get(layer.key_fingerprint or "")
        if key is not None and _verifies(layer, key, manifest.digest):
            candidates.append((layer, key))
    for layer, key in candidates:
        if key.pk == policy.key_id:
            return layer, key
    return candidates[0] if candidates else (None, None)


def _verifies(layer: SignatureLayer, key: Key, digest: str) -> bool:
    try:
        payload = parse_payload(layer.payload)
    except InvalidPayload:
        return False
    if payload.manifest_digest != digest:
        return False
    try:
        signature = base64.b64decode(layer.signature_b64, validate=True)
    except (binascii.Error, ValueError):
        return False
    return crypto.verify(
        crypto.load_public_key(key.public_key_pem),
        algorithm=ALGORITHM,
        message=layer.payload,
        message_type=crypto.RAW,
        signature=signature,
    )


def _record_signature(
    policy: SigningPolicy, manifest: Manifest, layer: SignatureLayer, key: Key, sig_digest: str
) -> Signature:
    now = timezone.now()
    values = {
        "status": SignatureStatus.SIGNED,
        "key_id": key.key_id,
        "key_fingerprint": key.public_key_fingerprint,
        "algorithm": ALGORITHM,
        "docker_reference": parse_payload(layer.payload).docker_reference,
        "payload": layer.payload,
        "signature_value": layer.signature_b64,
        "sig_manifest_digest": sig_digest,
        "signed_at": now,
        "failure_code": "",
        "failure_reason": "",
        "next_attempt_at": None,
        "claimed_until": None,
    }
    try:
        with transaction.atomic():
            signature, created = Signature.objects.get_or_create(
                policy=policy,
                manifest=manifest,
                defaults={**values, "trigger": Trigger.PUSH},
            )
    except IntegrityError:  # created meanwhile by a push of the same image
        return Signature.objects.get(policy=policy, manifest=manifest)
    if not created and signature.status != SignatureStatus.SIGNED:
        Signature.objects.filter(pk=signature.pk).update(**values, updated_at=now)
        signature.refresh_from_db()
    logger.info(
        "signature record restored %s@%s key=%s",
        manifest.repository.name,
        manifest.digest,
        key.alias,
    )
    return signature
