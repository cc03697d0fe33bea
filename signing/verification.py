"""Checking an image's signature the way an independent verifier would.

The ``.sig`` artifact is read from the registry (not from Signet's records), each
layer's signature is checked against the policy key's public key, and the payload's
identity and digest are compared with the image asked about.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from django.db.models import Q

from config.errors import DomainError
from kms import crypto
from kms.models import Key
from registry.models import Instance, Namespace
from registry.reference import IMAGE_REFERENCE_RE, REPOSITORY_RE, is_digest
from signing import artifacts
from signing.errors import ImageNotFound, InvalidPolicy, NoSigningPolicy
from signing.models import Signature, SigningPolicy
from signing.payload import InvalidPayload, InvalidSignatureManifest, parse_payload


@dataclass
class VerificationResult:
    image: str
    verified: bool
    digest: str = ""
    docker_reference: str = ""
    key_id: str = ""
    key_fingerprint: str = ""
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "image": self.image,
            "verified": self.verified,
            "digest": self.digest,
            "docker_reference": self.docker_reference,
            "key_id": self.key_id,
            "key_fingerprint": self.key_fingerprint,
            "reasons": self.reasons,
        }


@dataclass(frozen=True)
class ImageReference:
    domain: str
    repository: str
    tag: str | None
    digest: str | None


def parse_image(image: str) -> ImageReference:
    match = IMAGE_REFERENCE_RE.match(image.strip()) if isinstance(image, str) else None
    if (
        not match
        or not (match["tag"] or match["digest"])
        or "/" not in match["repository"]
        or not REPOSITORY_RE.fullmatch(match["repository"])  # e.g. "team//app", "team/app-"
    ):
        raise InvalidPolicy(
            "InvalidImage",
            "image",
            "Image must look like <domain>/<namespace>/<repository>:<tag> or "
            "<domain>/<namespace>/<repository>@sha256:<64 hex digits>.",
        )
    return ImageReference(match["domain"], match["repository"], match["tag"], match["digest"])


def _instance_for(domain: str) -> Instance:
    instance = (
        Instance.objects.filter(Q(default_domain=domain) | Q(domains__name=domain))
        .distinct()
        .first()
    )
    if instance is None:
        raise ImageNotFound(f"No registry instance answers to domain {domain}.")
    return instance


def _earlier_key_that_verifies(policy: SigningPolicy, payload: bytes, signature: bytes):
    """A key this policy signed with before (recorded on its signatures) that verifies."""
    earlier_ids = (
        Signature.objects.filter(policy=policy)
        .exclude(key_id=policy.key_id)
        .exclude(key_id__isnull=True)
        .values("key_id")
        .distinct()
    )
    for key in Key.objects.filter(key_id__in=earlier_ids).defer("sealed_private_key")[:10]:
        if crypto.verify(
            crypto.load_public_key(key.public_key_pem),
            algorithm=crypto.RSA_PKCS1_SHA_256,
            message=payload,
            message_type=crypto.RAW,
            signature=signature,
        ):
            return key
    return None


def _policy_for(instance: Instance, repository: str) -> SigningPolicy:
    """The signing policy of the repository's namespace: the key to verify with."""
    namespace_name = repository.split("/", 1)[0]
    namespace = Namespace.objects.filter(instance=instance, name=namespace_name).first()
    policy = (
        SigningPolicy.objects.select_related("key").filter(namespace=namespace).first()
        if namespace
        else None
    )
    if policy is None:
        raise NoSigningPolicy(
            f"Namespace {namespace_name} of instance {instance.name} has no signing policy, "
            "so there is no key to verify with."
        )
    return policy


def _digest_for(client, ref: ImageReference) -> str:
    """The digest asked about, or the one the tag points at in the registry."""
    if ref.digest:
        return ref.digest
    head = client.head_manifest(ref.repository, ref.tag or "")
    if head is None:
        raise ImageNotFound(f"{ref.repository}:{ref.tag} is not in the registry.")
    return head.digest


def _tag_points_at_digest(client, ref: ImageReference) -> bool:
    """For ``repo:tag@digest``: whether the registry's tag names that digest."""
    head = client.head_manifest(ref.repository, ref.tag)
    return head is not None and head.digest == ref.digest


def _layer_problem(
    layer: artifacts.SignatureLayer,
    *,
    policy: SigningPolicy,
    public_key: crypto.PublicKey,
    digest: str,
    expected_reference: str,
) -> str | None:
    """Why one signature layer does not verify the image, or None when it does."""
    key = policy.key
    try:
        signature = base64.b64decode(layer.signature_b64, validate=True)
    except ValueError:
        return "not valid base64."
    if not crypto.verify(
        public_key,
        algorithm=crypto.RSA_PKCS1_SHA_256,
        message=layer.payload,
        message_type=crypto.RAW,
        signature=signature,
    ):
        earlier = _earlier_key_that_verifies(policy, layer.payload, signature)
        hint = (
            f" It was made with the policy's earlier key {earlier.alias}: re-sign the "
            "policy's images to move them to the current key."
            if earlier
            else ""
        )
        return (
            f"does not verify with key {key.alias} "
            f"(fingerprint {key.public_key_fingerprint[:16]}…).{hint}"
        )
    try:
        payload = parse_payload(layer.payload)
    except InvalidPayload as exc:
        return f"payload rejected: {exc}"
    if payload.manifest_digest != digest:
        return f"signs digest {payload.manifest_digest}, not {digest}."
    if payload.docker_reference != expected_reference:
        return f"identity {payload.docker_reference} is not {expected_reference}."
    return None


def verify_image(*, image: str, instances=None) -> VerificationResult:
    """Verify ``image`` against its namespace policy's key. Never raises for a bad signature."""
    ref = parse_image(image)
    instance = _instance_for(ref.domain)
    if instances is not None and not instances.filter(pk=instance.pk).exists():
        raise ImageNotFound(f"No registry instance answers to domain {ref.domain}.")
    policy = _policy_for(instance, ref.repository)
    client = instance.registry_client()
    result = VerificationResult(image=image, verified=False)
    try:
        digest = _digest_for(client, ref)
        result.digest = digest
        if ref.tag and ref.digest and not _tag_points_at_digest(client, ref):
            result.reasons.append(f"Tag {ref.tag} does not point at {ref.digest}.")
            return result
        layers = artifacts.read_layers(client, ref.repository, digest)
    except (InvalidSignatureManifest, InvalidPayload) as exc:
        result.reasons.append(f"The signature artifact is malformed: {exc}")
        return result
    except DomainError:
        raise
    if not layers:
        result.reasons.append(f"No signature exists for {ref.repository}@{digest}.")
        return result

    key = policy.key
    public_key = crypto.load_public_key(key.public_key_pem)
    # What skopeo's matchRepository checks: the name the image is pulled by.
    expected_reference = f"{ref.domain}/{ref.repository}"
    result.key_id, result.key_fingerprint = str(key.key_id), key.public_key_fingerprint
    for number, layer in enumerate(layers, start=1):
        problem = _layer_problem(
            layer,
            policy=policy,
            public_key=public_key,
            digest=digest,
            expected_reference=expected_reference,
        )
        if problem:
            result.reasons.append(f"Signature {number}: {problem}")
            continue
        result.verified = True
        result.docker_reference = expected_reference  # what the payload's identity matched
        result.reasons = [f"Signature {number} verifies with key {key.alias}."]
        return result
    return result


__all__ = ["VerificationResult", "is_digest", "parse_image", "verify_image"]
