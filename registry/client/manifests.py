"""Manifests: HEAD and GET (every manifest and index media type accepted), PUT under a
tag or digest, DELETE by digest. A manifest read is checked against its digest."""

from __future__ import annotations

import contextlib
import json

import requests

from registry.client.auth import repo_access
from registry.client.results import Manifest, ManifestRef, sha256_digest
from registry.client.transport import Transport
from registry.errors import InvalidReference
from registry.reference import (
    ACCEPTED_MANIFEST_TYPES,
    is_digest,
    validate_digest,
    validate_reference,
    validate_repository_name,
)


def media_type_of(header: str | None) -> str:
    """The media type of a ``Content-Type`` header, without its parameters."""
    return (header or "").split(";", 1)[0].strip()


class ManifestOperations(Transport):
    def head_manifest(self, repository: str, reference: str) -> ManifestRef | None:
        """Digest, media type and size of a manifest, or None when the registry says 404."""
        validate_repository_name(repository)
        validate_reference(reference)
        response = self._request(
            "HEAD",
            f"/v2/{repository}/manifests/{reference}",
            operation=f"HEAD manifest {self._ref(repository, reference)}",
            access=repo_access(repository, "pull"),
            headers={"Accept": ", ".join(ACCEPTED_MANIFEST_TYPES)},
            allow_404=True,
        )
        if response.status_code == 404:
            return None
        digest = response.headers.get("Docker-Content-Digest") or ""
        media_type = media_type_of(response.headers.get("Content-Type"))
        size = response.headers.get("Content-Length") or ""
        if is_digest(reference):
            if digest and digest != reference:
                self._raise_mismatch(
                    f"HEAD manifest {self._ref(repository, reference)}", reference, digest
                )
            digest = reference
        if not digest or not media_type or not (size.isascii() and size.isdigit()):
            # A registry that leaves out the headers: read the manifest itself.
            manifest = self.get_manifest(repository, reference)
            return ManifestRef(manifest.digest, manifest.media_type, manifest.size)
        return ManifestRef(digest=digest, media_type=media_type, size=int(size))

    def get_manifest(self, repository: str, reference: str) -> Manifest:
        """The manifest bytes as stored; RegistryNotFound on 404.

        The digest is the registry's ``Docker-Content-Digest``; it must equal the sha256 of
        the body (and the requested digest when fetched by digest).
        """
        response, operation = self._manifest_response(repository, reference, allow_404=False)
        return self._checked_manifest(response, reference, operation)

    def find_manifest(self, repository: str, reference: str) -> Manifest | None:
        """``get_manifest``, or None when the registry says 404: one request where HEAD
        then GET would take two."""
        response, operation = self._manifest_response(repository, reference, allow_404=True)
        if response.status_code == 404:
            return None
        return self._checked_manifest(response, reference, operation)

    def _manifest_response(
        self, repository: str, reference: str, *, allow_404: bool
    ) -> tuple[requests.Response, str]:
        validate_repository_name(repository)
        validate_reference(reference)
        operation = f"GET manifest {self._ref(repository, reference)}"
        response = self._request(
            "GET",
            f"/v2/{repository}/manifests/{reference}",
            operation=operation,
            access=repo_access(repository, "pull"),
            headers={"Accept": ", ".join(ACCEPTED_MANIFEST_TYPES)},
            allow_404=allow_404,
            max_bytes=self.max_manifest_bytes,
            what="manifests",
        )
        return response, operation

    def _checked_manifest(
        self, response: requests.Response, reference: str, operation: str
    ) -> Manifest:
        """The answer's manifest, its bytes checked against the digests."""
        content = response.content
        computed = sha256_digest(content)
        if is_digest(reference) and computed != reference:
            self._raise_mismatch(operation, reference, computed)
        reported = response.headers.get("Docker-Content-Digest") or computed
        if reported.startswith("sha256:") and reported != computed:
            self._raise_mismatch(operation, reported, computed)
        media_type = media_type_of(response.headers.get("Content-Type"))
        if not media_type or media_type == "application/json":
            with contextlib.suppress(ValueError, AttributeError):
                media_type = str(json.loads(content).get("mediaType") or media_type)
        return Manifest(digest=reported, media_type=media_type, size=len(content), content=content)

    def put_manifest(self, repository: str, reference: str, content: bytes, media_type: str) -> str:
        """Store a manifest under a tag or a digest; the digest the registry reports."""
        validate_repository_name(repository)
        validate_reference(reference)
        if not media_type or not isinstance(media_type, str):
            raise InvalidReference(
                "a manifest media type is required", field="media_type", value=str(media_type)
            )
        response = self._request(
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            operation=f"PUT manifest {self._ref(repository, reference)}",
            access=repo_access(repository, "pull", "push"),
            ok=(201,),
            headers={"Content-Type": media_type},
            data=bytes(content),
        )
        return response.headers.get("Docker-Content-Digest") or sha256_digest(bytes(content))

    def delete_manifest(self, repository: str, digest: str) -> None:
        """Delete a manifest by digest (the registry refuses tags); RegistryNotFound on 404."""
        validate_repository_name(repository)
        validate_digest(digest)
        self._request(
            "DELETE",
            f"/v2/{repository}/manifests/{digest}",
            operation=f"DELETE manifest {repository}@{digest}",
            access=repo_access(repository, "delete"),
            ok=(202, 200),
        )

    @staticmethod
    def _ref(repository: str, reference: str) -> str:
        return f"{repository}@{reference}" if is_digest(reference) else f"{repository}:{reference}"
