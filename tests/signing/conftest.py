"""Fixtures for the signing tests: a real registry, the real (local) KMS, real services.

- ``instance`` (the root conftest's, with these ``instance_fields``): the registry instance
  ``signet`` whose backend is a real ``docker-registry`` (``registry_server``), default
  domain ``registry.signet.test`` and the custom domain ``images.signet.test``;
  ``webhook_token`` is its token.
- ``namespace``, ``authorized`` (the registry-signing grant), ``key`` (RSA_2048), ``policy``.
- ``registry``: ``registry_client``, a ``RegistryClient`` for the same registry.
- ``push_image_event`` / ``push_index_event``: push real images, then record the
  notifications Distribution sends for them with ``registry.services.record_events``.
- ``Verifiers`` (from tests/support/verifiers.py): skopeo and cosign.

Signing is wired in as config/settings.py installs it (the registry's push and delete
handlers, the KMS deletion guard); ``config.settings_test`` makes it run inline, in the
caller's thread, unless a test switches ``SIGNING_DISPATCH`` to ``"thread"``.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.utils import timezone

from kms import services as kms_services
from kms.models import AuthorizedService, Key
from registry import services as registry_services
from registry.client import OCI_INDEX, OCI_MANIFEST, RegistryClient
from registry.models import Instance, Manifest, Namespace
from signing import services
from signing.models import SigningPolicy, Worker
from signing.payload import (
    KEY_FINGERPRINT_ANNOTATION,
    SignatureLayer,
    parse_signature_manifest,
    signature_tag,
)
from tests.factories import make_key
from tests.support.oci import build_image, push_built_image, push_image
from tests.support.registry_server import RegistryServer, free_port
from tests.support.signer import Signer  # noqa: F401  (re-exported for the signing tests)
from tests.support.verifiers import Verifiers, cosign_path, skopeo_path  # noqa: F401

DOMAIN = "registry.signet.test"
CUSTOM_DOMAIN = "images.signet.test"
NAMESPACE = "team"
REPOSITORY = "team/app"
POLICY_NAME = "team-policy"
EVENTS_TYPE = "application/vnd.docker.distribution.events.v1+json"


# --- objects --------------------------------------------------------------------------------


@pytest.fixture
def instance_fields(registry_server: RegistryServer) -> dict[str, Any]:
    return {
        "name": "signet",
        "backend_url": registry_server.url,
        "default_domain": DOMAIN,
        "custom_domains": [CUSTOM_DOMAIN],
    }


@pytest.fixture
def namespace(instance: Instance) -> Namespace:
    return registry_services.create_namespace(instance=instance, name=NAMESPACE)


@pytest.fixture
def authorized(db):
    return kms_services.grant_service_authorization(
        service=AuthorizedService.REGISTRY_SIGNING, note="signing tests"
    )


@pytest.fixture
def key(db) -> Key:
    return make_key("image-signing")


@pytest.fixture
def other_key(db) -> Key:
    return make_key("image-signing-2")


@pytest.fixture
def policy(namespace: Namespace, key: Key, authorized) -> SigningPolicy:
    return services.create_policy(namespace=namespace, name=POLICY_NAME, key=key).policy


@pytest.fixture
def registry(registry_client: RegistryClient) -> RegistryClient:
    return registry_client


# --- notifications --------------------------------------------------------------------------


def event(action: str, repository: str, **target: Any) -> dict[str, Any]:
    """One notification shaped like Distribution 2.8's (see tests/registry/data)."""
    return {
        "id": str(uuid.uuid4()),
        "timestamp": timezone.now().isoformat().replace("+00:00", "Z"),
        "action": action,
        "target": {"repository": repository, **target},
        "request": {"method": "PUT" if action == "push" else "DELETE", "useragent": "tests"},
        "actor": {},
        "source": {"addr": "127.0.0.1:5000"},
    }


def push_event(
    repository: str,
    digest: str,
    *,
    media_type: str = OCI_MANIFEST,
    size: int = 401,
    tag: str | None = None,
    references: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    target: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": size}
    target["length"] = size
    if tag:
        target["tag"] = tag
    if references is not None:
        target["references"] = references
    return event("push", repository, **target)


def delete_event(repository: str, digest: str) -> dict[str, Any]:
    return event("delete", repository, digest=digest)


def envelope(*events: dict[str, Any]) -> dict[str, Any]:
    return {"events": list(events)}


@dataclass
class Pushed:
    digest: str
    envelope: dict[str, Any]
    children: list[str]


@pytest.fixture
def push_image_event(instance: Instance, registry: RegistryClient) -> Callable[..., Pushed]:
    """Push a real image by tag, then record the registry's notification for it."""

    def push(
        repository: str = REPOSITORY,
        tag: str | None = "v1",
        *,
        seed: str = "x",
        record: bool = True,
    ) -> Pushed:
        image = build_image(seed=seed)
        digest = push_built_image(registry, repository, image, tag)
        body = envelope(push_event(repository, digest, size=len(image.manifest), tag=tag))
        if record:
            registry_services.record_events(instance=instance, envelope=body)
        return Pushed(digest=digest, envelope=body, children=[])

    return push


@pytest.fixture
def push_index_event(instance: Instance, registry: RegistryClient) -> Callable[..., Pushed]:
    """Push a real two-platform index: children by digest, then the index by tag.

    Records what Distribution (``includereferences: true``) sends: one tag-less push per
    child, then the index push with its references.
    """

    def push(repository: str = REPOSITORY, tag: str = "multi", *, seed: str = "m") -> Pushed:
        events, references, children = [], [], []
        for os_name, arch in (("linux", "amd64"), ("linux", "arm64")):
            image = build_image(seed=seed, os=os_name, architecture=arch)
            digest = push_built_image(registry, repository, image, None)
            children.append(digest)
            events.append(push_event(repository, digest, size=len(image.manifest)))
            references.append(
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": digest,
                    "size": len(image.manifest),
                    "platform": {"os": os_name, "architecture": arch},
                }
            )
        index = json.dumps(
            {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": references},
            separators=(",", ":"),
            sort_keys=True,
        ).encode()
        index_digest = registry.put_manifest(repository, tag, index, OCI_INDEX)
        events.append(
            push_event(
                repository,
                index_digest,
                media_type=OCI_INDEX,
                size=len(index),
                tag=tag,
                references=references,
            )
        )
        body = envelope(*events)
        registry_services.record_events(instance=instance, envelope=body)
        return Pushed(digest=index_digest, envelope=body, children=children)

    return push


def manifest(digest: str) -> Manifest:
    return Manifest.objects.select_related("repository__namespace").get(digest=digest)


# --- the registry side of a signature -------------------------------------------------------


def sig_manifest(client: RegistryClient, repository: str, digest: str):
    """The ``.sig`` manifest beside ``digest`` (None when there is none)."""
    tag = signature_tag(digest)
    if client.head_manifest(repository, tag) is None:
        return None
    return client.get_manifest(repository, tag)


def sig_layers(client: RegistryClient, repository: str, digest: str) -> list[SignatureLayer]:
    sig = sig_manifest(client, repository, digest)
    if sig is None:
        return []
    return [
        SignatureLayer.from_entry(entry, client.get_blob(repository, entry.layer_digest))
        for entry in parse_signature_manifest(sig.json)
    ]


def layer_fingerprints(client: RegistryClient, repository: str, digest: str) -> list[str | None]:
    sig = sig_manifest(client, repository, digest)
    if sig is None:
        return []
    return [
        layer.get("annotations", {}).get(KEY_FINGERPRINT_ANNOTATION) for layer in sig.json["layers"]
    ]


def verifies_with(public_key_pem: str, payload: bytes, signature_b64: str) -> bool:
    """An independent check of an RSA PKCS#1 v1.5 / SHA-256 signature (``cryptography``)."""
    public_key = serialization.load_pem_public_key(public_key_pem.encode())
    assert isinstance(public_key, rsa.RSAPublicKey)
    try:
        public_key.verify(
            base64.b64decode(signature_b64), payload, padding.PKCS1v15(), hashes.SHA256()
        )
    except Exception:  # cryptography raises InvalidSignature
        return False
    return True


def expected_payload(reference: str, digest: str) -> bytes:
    return (
        b'{"critical":{"identity":{"docker-reference":"' + reference.encode() + b'"},'
        b'"image":{"docker-manifest-digest":"' + digest.encode() + b'"},'
        b'"type":"cosign container image signature"},"optional":null}'
    )


def dead_url() -> str:
    """A loopback URL nothing listens on."""
    return f"http://127.0.0.1:{free_port()}"


def point_instance_at(instance: Instance, url: str) -> Instance:
    return registry_services.update_instance(instance=instance, backend_url=url)


# --- the independent verifiers --------------------------------------------------------------


def write_public_key(key: Key, path: Path) -> Path:
    path.write_text(key.public_key_pem)
    return path


@pytest.fixture
def verifiers_available() -> None:
    skopeo_path(), cosign_path()  # fail (not skip) with the install hint before anything else


@pytest.fixture
def three_images(instance, policy, registry) -> list[Manifest]:
    """team/app v0..v2, recorded by a sync (existing images: nothing signs them yet)."""
    for number in range(3):
        push_image(registry, "team/app", f"v{number}", seed=f"held{number}")
    assert not registry_services.sync_instance(instance=instance).errors
    return list(Manifest.objects.order_by("pk"))


def silent_worker(*, silent_for: float) -> Worker:
    """A registered worker row whose last heartbeat was ``silent_for`` seconds ago."""
    now = timezone.now()
    return Worker.objects.create(
        kind="web",
        hostname="elsewhere",
        pid=4242,
        started_at=now - timedelta(minutes=5),
        heartbeat_at=now - timedelta(seconds=silent_for),
    )
