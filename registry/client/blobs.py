"""Blobs: existence check, GET with digest verification (the one read that may follow a
redirect, to the registry's storage), monolithic upload (POST + PUT ``?digest=``).

The single-request upload the OCI distribution spec allows (``POST ...?digest=`` with the
body) is optional: Distribution 2.8 ignores the body and answers 202 with an upload
session, so POST + PUT is the fewest requests every registry accepts."""

from __future__ import annotations

from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

from registry.client.auth import repo_access
from registry.client.results import sha256_digest
from registry.client.transport import Transport
from registry.errors import RegistryError, RegistryNotFound
from registry.reference import validate_digest, validate_repository_name


class BlobOperations(Transport):
    def blob_exists(self, repository: str, digest: str) -> bool:
        validate_repository_name(repository)
        validate_digest(digest)
        response = self._request(
            "HEAD",
            f"/v2/{repository}/blobs/{digest}",
            operation=f"HEAD blob {repository}@{digest}",
            access=repo_access(repository, "pull"),
            allow_404=True,
            follow_redirects=True,
        )
        return response.status_code != 404

    def get_blob(self, repository: str, digest: str, *, max_bytes: int | None = None) -> bytes:
        """The blob's bytes, checked against ``digest``; RegistryNotFound on 404.

        A redirect (to the registry's storage) is followed; ``Authorization`` goes only to
        the registry's own origin. ``max_bytes`` (default ``max_blob_bytes``) caps the size.
        """
        validate_repository_name(repository)
        validate_digest(digest)
        operation = f"GET blob {repository}@{digest}"
        response = self._request(
            "GET",
            f"/v2/{repository}/blobs/{digest}",
            operation=operation,
            access=repo_access(repository, "pull"),
            follow_redirects=True,
            max_bytes=self.max_blob_bytes if max_bytes is None else max_bytes,
            what="blobs",
        )
        content = response.content
        computed = sha256_digest(content)
        if computed != digest:
            self._raise_mismatch(operation, digest, computed)
        return content

    def upload_blob(self, repository: str, data: bytes, *, check_exists: bool = True) -> str:
        """Upload ``data`` (monolithic POST + PUT ``?digest=``); its digest.

        ``check_exists``: HEAD first and skip the upload when the registry has the blob.
        Off for blobs the caller has just made (one request fewer; uploading a blob the
        registry happens to hold already is harmless, the digest names the same bytes).
        """
        validate_repository_name(repository)
        digest = sha256_digest(data)
        if check_exists and self.blob_exists(repository, digest):
            return digest
        access = repo_access(repository, "pull", "push")
        start = self._request(
            "POST",
            f"/v2/{repository}/blobs/uploads/",
            operation=f"POST blob upload {repository}",
            access=access,
            ok=(202,),
        )
        location = start.headers.get("Location")
        if not location:
            raise RegistryError(
                f"registry {self.name}: POST blob upload {repository} failed: "
                "202 without a Location header",
                registry=self.name,
                operation=f"POST blob upload {repository}",
                status=start.status_code,
            )
        upload_url = self._same_origin(
            urljoin(start.url, location), f"POST blob upload {repository}"
        )
        parts = urlsplit(upload_url)
        query = "&".join(q for q in (parts.query, urlencode({"digest": digest})) if q)
        upload_url = urlunsplit(parts._replace(query=query))
        operation = f"PUT blob {repository}@{digest}"
        try:
            response = self._request(
                "PUT",
                upload_url,
                operation=operation,
                access=access,
                ok=(201, 204),
                headers={"Content-Type": "application/octet-stream"},
                data=data,
            )
        except RegistryNotFound:
            # A retried PUT finds its upload session gone when the first PUT landed.
            if self.blob_exists(repository, digest):
                return digest
            raise
        reported = response.headers.get("Docker-Content-Digest")
        if reported and reported != digest:
            self._raise_mismatch(operation, digest, reported)
        return digest
