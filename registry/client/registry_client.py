"""``RegistryClient``: one registry's API, put together from its operations."""

from __future__ import annotations

from registry.client.blobs import BlobOperations
from registry.client.catalog import CatalogOperations
from registry.client.manifests import ManifestOperations


class RegistryClient(ManifestOperations, BlobOperations, CatalogOperations):
    """A client for one registry.

    Args:
        base_url: ``http(s)://host[:port]`` (a path prefix is kept).
        username, password: used for HTTP basic auth when the registry asks for it, and
            sent to the token endpoint of a bearer challenge (only over https or when the
            token endpoint is on the registry's own host).
        token: a static bearer token, sent with every request (no token flow then).
        timeout: ``requests`` timeout (connect, read) for each attempt.
        retries: how many times a request is *attempted* in total when it fails
            transiently (connection error, timeout, 5xx); at least 1.
        backoff: first delay between attempts in seconds, doubled after each retry.
        name: how messages name the registry (defaults to ``base_url``).
        session: a ``requests.Session`` to use (one is created otherwise).
        trust_env: whether a session created here takes proxies, ``.netrc`` credentials
            and CA bundles from the environment (``requests``' ``trust_env``); off unless
            asked for (``REGISTRY_TRUST_ENV``).
        deny_networks: no connection is opened to an address inside these networks
            (checked after DNS resolution, for every request: registry, realm, storage).
        allowed_realm_origins: ``http://host:port`` origins a token realm may use besides
            https and the registry's own origin.
        max_manifest_bytes, max_blob_bytes, max_token_bytes, max_response_bytes: the most
            a manifest, a blob, a token answer or any other answer may hold in memory.
    """

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
