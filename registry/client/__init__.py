"""A small OCI Distribution (Docker Registry HTTP API v2) client over ``requests``.

By concern:

- ``registry_client``: ``RegistryClient``, put together from the operations below;
- ``manifests``: HEAD/GET (every manifest and index media type accepted), PUT, DELETE by
  digest;
- ``blobs``: existence check, GET with digest verification, monolithic upload (POST + PUT);
- ``catalog``: ``/v2/_catalog`` and ``/v2/<name>/tags/list`` following ``Link`` pagination;
- ``auth``: HTTP basic, a static bearer token, and the Docker token flow with tokens
  cached per scope until they expire;
- ``transport``: the session, retries with backoff, and the outbound limits (redirects,
  size caps, denied networks; ``registry.outbound``, ``registry.network``);
- ``errors``: how failed exchanges become ``registry.errors`` domain errors;
- ``results``: the manifests the client answers with.

Repository names, tags and digests are validated before any request
(``registry.reference``). Credentials and tokens never appear in messages or logs.
"""

from registry.client.registry_client import RegistryClient
from registry.client.results import Manifest, ManifestRef, sha256_digest
from registry.client.transport import MAX_BLOB_BYTES, MAX_MANIFEST_BYTES, MAX_RESPONSE_BYTES
from registry.reference import (
    ACCEPTED_MANIFEST_TYPES,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
)

__all__ = [
    "ACCEPTED_MANIFEST_TYPES",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "MAX_BLOB_BYTES",
    "MAX_MANIFEST_BYTES",
    "MAX_RESPONSE_BYTES",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "Manifest",
    "ManifestRef",
    "RegistryClient",
    "sha256_digest",
]
