"""Tiny OCI / Docker images built and pushed through ``RegistryClient`` (no docker daemon).

Used by ``make run`` for its demo push and by the tests for their test data.

Everything is derived from a ``seed`` string: the same seed, platform and media type
always give the same bytes and digests; different seeds give different images.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from typing import Any

from registry.client.registry_client import RegistryClient
from registry.client.results import sha256_digest
from registry.reference import DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

_BLOB_TYPES = {
    OCI_MANIFEST: (OCI_CONFIG, OCI_LAYER),
    DOCKER_MANIFEST: (DOCKER_CONFIG, DOCKER_LAYER),
}
_CHILD_TYPE = {OCI_INDEX: OCI_MANIFEST, DOCKER_MANIFEST_LIST: DOCKER_MANIFEST}


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


@dataclass(frozen=True)
class BuiltImage:
    """The bytes of one single-platform image; ``digest`` is the manifest's sha256."""

    config: bytes
    layer: bytes
    manifest: bytes
    media_type: str
    digest: str
    os: str
    architecture: str


def _layer_tar(seed: str, os_name: str, architecture: str) -> bytes:
    """An uncompressed tar holding one small file whose content depends on the seed."""
    content = (
        f"seed={seed}\nplatform={os_name}/{architecture}\n"
        + hashlib.sha256(f"{seed}/{os_name}/{architecture}".encode()).hexdigest()
        + "\n"
    ).encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("signet-test/seed.txt")
        info.size = len(content)
        info.mtime = 0
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def build_image(
    *,
    seed: str = "x",
    media_type: str = OCI_MANIFEST,
    os: str = "linux",
    architecture: str = "amd64",
) -> BuiltImage:
    if media_type not in _BLOB_TYPES:
        raise ValueError(f"unsupported image manifest media type {media_type!r}")
    config_type, layer_type = _BLOB_TYPES[media_type]
    tar = _layer_tar(seed, os, architecture)
    layer = gzip.compress(tar, mtime=0)
    config = canonical_json(
        {
            "architecture": architecture,
            "os": os,
            "config": {"Labels": {"org.signet.test.seed": seed}},
            "rootfs": {"type": "layers", "diff_ids": [sha256_digest(tar)]},
        }
    )
    manifest = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {
                "mediaType": config_type,
                "digest": sha256_digest(config),
                "size": len(config),
            },
            "layers": [
                {"mediaType": layer_type, "digest": sha256_digest(layer), "size": len(layer)}
            ],
        }
    )
    return BuiltImage(
        config=config,
        layer=layer,
        manifest=manifest,
        media_type=media_type,
        digest=sha256_digest(manifest),
        os=os,
        architecture=architecture,
    )


def push_built_image(
    client: RegistryClient, repository: str, image: BuiltImage, tag: str | None
) -> str:
    client.upload_blob(repository, image.config)
    client.upload_blob(repository, image.layer)
    return client.put_manifest(repository, tag or image.digest, image.manifest, image.media_type)


def push_image(
    client: RegistryClient,
    repository: str,
    tag: str | None = None,
    *,
    seed: str = "x",
    media_type: str = OCI_MANIFEST,
    os: str = "linux",
    architecture: str = "amd64",
) -> str:
    """Push a tiny image (config + one gzip tar layer) by tag, or by digest when tag is None.

    Returns the digest the registry reports for the manifest.
    """
    image = build_image(seed=seed, media_type=media_type, os=os, architecture=architecture)
    return push_built_image(client, repository, image, tag)


def push_index(
    client: RegistryClient,
    repository: str,
    tag: str,
    *,
    platforms: tuple[tuple[str, str], ...] = (("linux", "amd64"), ("linux", "arm64")),
    seed: str = "x",
    media_type: str = OCI_INDEX,
) -> tuple[str, list[str]]:
    """Push one image per platform by digest, then the index by tag.

    Returns ``(index_digest, child_digests)`` as the registry reported them.
    """
    if media_type not in _CHILD_TYPE:
        raise ValueError(f"unsupported index media type {media_type!r}")
    child_type = _CHILD_TYPE[media_type]
    entries = []
    child_digests = []
    for os_name, architecture in platforms:
        image = build_image(seed=seed, media_type=child_type, os=os_name, architecture=architecture)
        child_digests.append(push_built_image(client, repository, image, None))
        entries.append(
            {
                "mediaType": child_type,
                "digest": image.digest,
                "size": len(image.manifest),
                "platform": {"os": os_name, "architecture": architecture},
            }
        )
    index = canonical_json({"schemaVersion": 2, "mediaType": media_type, "manifests": entries})
    return client.put_manifest(repository, tag, index, media_type), child_digests
