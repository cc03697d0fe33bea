"""The image a signature is about, as the registry holds it (never as an event claims it).

Before any payload is built, the manifest is fetched by digest from the registry, its
exact bytes are hashed and compared with the digest, and its media type must be an image
manifest or index. An index's children are read from the fetched bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from registry.client import RegistryClient, sha256_digest
from registry.errors import RegistryDigestMismatch, RegistryNotFound, RegistryResponseTooLarge
from registry.reference import INDEX_TYPES, RECORDED_MANIFEST_TYPES
from registry.services import Reference, parse_index_children
from signing.errors import ManifestNotVerified, ManifestUnknown

SIGNABLE_MEDIA_TYPES = RECORDED_MANIFEST_TYPES


@dataclass(frozen=True)
class Subject:
    """A manifest fetched by digest and verified."""

    repository: str
    digest: str
    media_type: str
    size: int
    children: tuple[Reference, ...] = ()

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES


def fetch_subject(client: RegistryClient, repository: str, digest: str) -> Subject:
    """The verified manifest ``repository@digest``; ManifestUnknown or ManifestNotVerified."""
    where = f"{repository}@{digest}"
    try:
        fetched = client.get_manifest(repository, digest)
    except RegistryNotFound:
        raise ManifestUnknown(
            f"The registry does not hold {where}; nothing was signed.",
            repository=repository,
            digest=digest,
        ) from None
    except (RegistryDigestMismatch, RegistryResponseTooLarge) as exc:
        raise ManifestNotVerified(
            f"{where}: {exc.message}; nothing was signed.", repository=repository, digest=digest
        ) from None
    # The client checks the hash too; the promise of a signature rests on this line.
    if sha256_digest(fetched.content) != digest:
        raise ManifestNotVerified(
            f"{where}: the registry's manifest does not hash to its digest; nothing was signed.",
            repository=repository,
            digest=digest,
        )
    if fetched.media_type not in SIGNABLE_MEDIA_TYPES:
        raise ManifestNotVerified(
            f"{where} is {fetched.media_type or 'of no media type'}, not an image manifest "
            "or index; nothing was signed.",
            repository=repository,
            digest=digest,
            media_type=fetched.media_type,
        )
    try:
        document = json.loads(fetched.content)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise ManifestNotVerified(
            f"{where}: the registry's manifest is not a JSON object; nothing was signed.",
            repository=repository,
            digest=digest,
        )
    declared = document.get("mediaType")
    if declared is not None and declared != fetched.media_type:
        raise ManifestNotVerified(
            f"{where}: served as {fetched.media_type} but declares {declared!r}; nothing was "
            "signed.",
            repository=repository,
            digest=digest,
        )
    children = parse_index_children(document) if fetched.media_type in INDEX_TYPES else ()
    return Subject(
        repository=repository,
        digest=digest,
        media_type=fetched.media_type,
        size=fetched.size,
        children=children,
    )
