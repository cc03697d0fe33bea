"""A small OCI Distribution (Docker Registry HTTP API v2) client over ``requests``.

What it does:

- manifests: HEAD/GET (every manifest and index media type accepted), PUT, DELETE by digest;
- blobs: existence check, GET with digest verification, monolithic upload (POST + PUT);
- listings: ``/v2/_catalog`` and ``/v2/<name>/tags/list`` following ``Link`` pagination;
- authentication: HTTP basic, a static bearer token, and the Docker token flow
  (``WWW-Authenticate: Bearer realm=...,service=...,scope=...``) with tokens cached per
  scope until they expire;
- retries with exponential backoff on connection errors, timeouts and 5xx answers, never
  on 4xx; every failure becomes a ``registry.errors`` domain error naming the registry, the
  operation and the status;
- outbound limits: no redirect is followed except for blob reads (a registry may send
  those to its storage; ``Authorization`` is then only forwarded to the registry's own
  origin), a token ``realm`` must be https or the registry's origin (or one of
  ``allowed_realm_origins``), every answer is read into memory up to a size cap
  (``RegistryResponseTooLarge`` above it), and with ``deny_networks`` no connection is
  opened to an address of those networks, checked after DNS resolution
  (``registry.outbound``, ``registry.network``).

Repository names, tags and digests are validated before any request (the validators
are public: the webhook reuses them). Credentials and tokens never appear in messages
or logs.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

import requests

from registry import outbound
from registry.errors import (
    InvalidReference,
    RegistryAddressDenied,
    RegistryAuthError,
    RegistryDigestMismatch,
    RegistryError,
    RegistryNotFound,
    RegistryRequestRejected,
    RegistryUnavailable,
)
from registry.network import BackendAddressDenied, DenyNetworksAdapter, Network

logger = logging.getLogger(__name__)

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_MEDIA_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST)
INDEX_MEDIA_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)

USER_AGENT = "signet-registry-client/1"
MAX_BACKOFF_SECONDS = 10.0
DEFAULT_TOKEN_LIFETIME = 60
MAX_PAGES = 10_000
# Distribution refuses manifests above 4 MiB; a signature blob is a few hundred bytes.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_BLOB_BYTES = 4 * 1024 * 1024
MAX_TOKEN_ANSWER_BYTES = 1024 * 1024
MAX_RESPONSE_BYTES = 4 * 1024 * 1024  # listings, error bodies, anything else

# --------------------------------------------------------------------------------------
# Reference grammar (github.com/distribution/reference)
# --------------------------------------------------------------------------------------

# "[-]+" (not "[-]*"): the same names, without catastrophic backtracking on bad ones.
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_REPOSITORY_RE = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
_TAG_RE = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
MAX_REPOSITORY_LENGTH = 255


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def validate_repository_name(name: str) -> str:
    """Return ``name`` if it is a valid repository name, else raise ``InvalidReference``.

    Lowercase path components (``[a-z0-9]`` runs joined by ``.``, ``_``, ``__`` or dashes)
    separated by ``/``, at most 255 characters in total.
    """
    if (
        not isinstance(name, str)
        or len(name) > MAX_REPOSITORY_LENGTH
        or not _REPOSITORY_RE.fullmatch(name)
    ):
        raise InvalidReference(
            f"invalid repository name {_shown(name)}: expected lowercase path components "
            "([a-z0-9] separated by '.', '_', '__' or '-') joined by '/', "
            f"at most {MAX_REPOSITORY_LENGTH} characters",
            field="repository",
            value=str(name),
        )
    return name


def validate_tag(tag: str) -> str:
    """Return ``tag`` if it matches ``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}``, else raise."""
    if not isinstance(tag, str) or not _TAG_RE.fullmatch(tag):
        raise InvalidReference(
            f"invalid tag {_shown(tag)}: expected 1-128 characters of [A-Za-z0-9_.-], "
            "not starting with '.' or '-'",
            field="tag",
            value=str(tag),
        )
    return tag


def validate_digest(digest: str) -> str:
    """Return ``digest`` if it is ``sha256:`` followed by 64 lowercase hex digits, else raise."""
    if not isinstance(digest, str) or not _DIGEST_RE.fullmatch(digest):
        raise InvalidReference(
            f"invalid digest {_shown(digest)}: expected 'sha256:' and 64 lowercase hex digits",
            field="digest",
            value=str(digest),
        )
    return digest


def is_digest(reference: str) -> bool:
    """True when a manifest reference is a digest rather than a tag."""
    return isinstance(reference, str) and ":" in reference


def validate_reference(reference: str) -> str:
    """A manifest reference: a digest (contains ``:``) or a tag."""
    return validate_digest(reference) if is_digest(reference) else validate_tag(reference)


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ManifestRef:
    digest: str
    media_type: str
    size: int


@dataclass(frozen=True)
class Manifest(ManifestRef):
    content: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.content)


# --------------------------------------------------------------------------------------
# Token-flow helpers
# --------------------------------------------------------------------------------------

# (resource type, resource name) -> actions, e.g. ("repository", "prod/app") -> {"pull"}
Access = dict[tuple[str, str], frozenset[str]]

_CHALLENGE_PARAM_RE = re.compile(r'([A-Za-z_][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')


def parse_challenge(header: str) -> tuple[str, dict[str, str]] | None:
    """``'Bearer realm="x",scope="y"'`` -> ``("bearer", {"realm": "x", "scope": "y"})``."""
    header = (header or "").strip()
    if not header:
        return None
    scheme, _, rest = header.partition(" ")
    params: dict[str, str] = {}
    for match in _CHALLENGE_PARAM_RE.finditer(rest):
        quoted, bare = match.group(2), match.group(3)
        value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
        params[match.group(1).lower()] = value
    return scheme.lower(), params


def parse_scopes(scope: str) -> Access:
    """``"repository:a/b:pull,push registry:catalog:*"`` -> access mapping."""
    access: dict[tuple[str, str], set[str]] = {}
    for item in (scope or "").split():
        kind, sep, rest = item.partition(":")
        name, sep2, actions = rest.rpartition(":")
        if not (sep and sep2 and kind and name):
            continue
        access.setdefault((kind, name), set()).update(a for a in actions.split(",") if a)
    return {resource: frozenset(actions) for resource, actions in access.items()}


def format_scopes(access: Access) -> list[str]:
    """One ``type:name:action,action`` string per resource, sorted (stable cache keys)."""
    return [
        f"{kind}:{name}:{','.join(sorted(actions))}"
        for (kind, name), actions in sorted(access.items())
    ]


def _access_key(access: Access) -> str:
    return " ".join(format_scopes(access))


def _covers(granted: Access, needed: Access) -> bool:
    return all(
        actions <= granted.get(resource, frozenset()) for resource, actions in needed.items()
    )


def _repo_access(repository: str, *actions: str) -> Access:
    return {("repository", repository): frozenset(actions)}


CATALOG_ACCESS: Access = {("registry", "catalog"): frozenset({"*"})}


@dataclass
class _CachedToken:
    realm: str
    service: str
    access: Access
    value: str
    expires_at: float


class _TransientError(Exception):
    """A failure worth retrying that is not a ``requests`` exception (token endpoint 5xx)."""


_RETRYABLE_EXCEPTIONS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    _TransientError,
)


def _describe_exception(exc: Exception) -> str:
    if isinstance(exc, _TransientError):
        return str(exc)
    if isinstance(exc, requests.Timeout):
        return f"timed out ({type(exc).__name__})"
    if isinstance(exc, requests.ConnectionError):
        return f"could not connect ({type(exc).__name__})"
    return type(exc).__name__


def _registry_error_body(response: requests.Response) -> tuple[str | None, str | None]:
    """The first ``errors[]`` entry's code and message, if the body has them."""
    try:
        body = response.json()
    except ValueError:
        return None, None
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        code = errors[0].get("code")
        message = errors[0].get("message")
        return (str(code) if code else None), (str(message)[:200] if message else None)
    return None, None


def _status_summary(response: requests.Response) -> tuple[str, str | None]:
    code, message = _registry_error_body(response)
    summary = str(response.status_code)
    if code:
        summary += f" {code}"
        if message:
            summary += f" ({message})"
    elif response.reason:
        summary += f" {response.reason}"
    return summary, code


def _media_type(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip()


# --------------------------------------------------------------------------------------
# The client
# --------------------------------------------------------------------------------------


class RegistryClient:
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
        deny_networks: no connection is opened to an address inside these networks
            (checked after DNS resolution, for every request: registry, realm, storage).
        allowed_realm_origins: ``http://host:port`` origins a token realm may use besides
            https and the registry's own origin.
        max_manifest_bytes, max_blob_bytes, max_token_bytes, max_response_bytes: the most
            a manifest, a blob, a token answer or any other answer may hold in memory.
    """

    def __init__(
        self,
        base_url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        timeout: float | tuple[float, float] = (3.05, 30),
        retries: int = 3,
        backoff: float = 0.2,
        name: str | None = None,
        session: requests.Session | None = None,
        deny_networks: tuple[Network, ...] | list[Network] = (),
        allowed_realm_origins: tuple[str, ...] | list[str] = (),
        max_manifest_bytes: int = MAX_MANIFEST_BYTES,
        max_blob_bytes: int = MAX_BLOB_BYTES,
        max_token_bytes: int = MAX_TOKEN_ANSWER_BYTES,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        parts = urlsplit(base_url or "")
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"registry base_url must be an http(s) URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._origin = (parts.scheme, parts.netloc)
        self._registry_origin = outbound.origin(base_url)
        self.name = name or self.base_url
        self.username = username
        self._password = password
        self._static_token = token
        self.timeout = timeout
        self.attempts = max(1, int(retries))
        self.backoff = max(0.0, float(backoff))
        self.session = session or requests.Session()
        self._own_session = session is None
        if deny_networks:
            adapter = DenyNetworksAdapter(deny_networks)
            self.session.mount("http://", adapter)
            self.session.mount("https://", adapter)
        self._allowed_realm_origins = frozenset(map(outbound.origin, allowed_realm_origins))
        self.max_manifest_bytes = max_manifest_bytes
        self.max_blob_bytes = max_blob_bytes
        self.max_token_bytes = max_token_bytes
        self.max_response_bytes = max_response_bytes
        self._use_basic = False
        self._lock = threading.Lock()
        self._tokens: list[_CachedToken] = []
        # What the registry actually challenged for a given request scope, learned on 401.
        self._scope_aliases: dict[str, Access] = {}

    def __repr__(self) -> str:
        return f"<RegistryClient {self.name}>"

    def close(self) -> None:
        if self._own_session:
            self.session.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- public API ------------------------------------------------------------------------

    def ping(self) -> None:
        """``GET /v2/``: raises unless the registry answers 200 (after authentication)."""
        self._request("GET", "/v2/", operation="GET /v2/", access={})

    def catalog(self, *, page_size: int = 100) -> Iterator[str]:
        """Every repository name, following ``Link: <...>; rel="next"`` pagination."""
        self._check_page_size(page_size)
        return self._paginate(
            f"/v2/_catalog?{urlencode({'n': page_size})}",
            operation="GET catalog",
            access=CATALOG_ACCESS,
            key="repositories",
        )

    def list_tags(self, repository: str, *, page_size: int = 100) -> Iterator[str]:
        """Every tag of ``repository``, following ``Link`` pagination.

        Yields nothing for a repository without tags. Distribution answers ``tags: null``
        once every tag is deleted, and 404 ``NAME_UNKNOWN`` for a repository that only
        holds untagged manifests (indistinguishable from an unknown one), so both are empty.
        """
        validate_repository_name(repository)
        self._check_page_size(page_size)
        return self._paginate(
            f"/v2/{repository}/tags/list?{urlencode({'n': page_size})}",
            operation=f"GET tags {repository}",
            access=_repo_access(repository, "pull"),
            key="tags",
            missing_is_empty=True,
        )

    def head_manifest(self, repository: str, reference: str) -> ManifestRef | None:
        """Digest, media type and size of a manifest, or None when the registry says 404."""
        validate_repository_name(repository)
        validate_reference(reference)
        response = self._request(
            "HEAD",
            f"/v2/{repository}/manifests/{reference}",
            operation=f"HEAD manifest {self._ref(repository, reference)}",
            access=_repo_access(repository, "pull"),
            headers={"Accept": ", ".join(MANIFEST_MEDIA_TYPES)},
            allow_404=True,
        )
        if response.status_code == 404:
            return None
        digest = response.headers.get("Docker-Content-Digest") or ""
        media_type = _media_type(response.headers.get("Content-Type"))
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
        validate_repository_name(repository)
        validate_reference(reference)
        operation = f"GET manifest {self._ref(repository, reference)}"
        response = self._request(
            "GET",
            f"/v2/{repository}/manifests/{reference}",
            operation=operation,
            access=_repo_access(repository, "pull"),
            headers={"Accept": ", ".join(MANIFEST_MEDIA_TYPES)},
            max_bytes=self.max_manifest_bytes,
            what="manifests",
        )
        content = response.content
        computed = sha256_digest(content)
        if is_digest(reference) and computed != reference:
            self._raise_mismatch(operation, reference, computed)
        reported = response.headers.get("Docker-Content-Digest") or computed
        if reported.startswith("sha256:") and reported != computed:
            self._raise_mismatch(operation, reported, computed)
        media_type = _media_type(response.headers.get("Content-Type"))
        if not media_type or media_type == "application/json":
            with contextlib.suppress(ValueError, AttributeError):
                media_type = str(json.loads(content).get("mediaType") or media_type)
        return Manifest(digest=reported, media_type=media_type, size=len(content), content=content)

    def blob_exists(self, repository: str, digest: str) -> bool:
        validate_repository_name(repository)
        validate_digest(digest)
        response = self._request(
            "HEAD",
            f"/v2/{repository}/blobs/{digest}",
            operation=f"HEAD blob {repository}@{digest}",
            access=_repo_access(repository, "pull"),
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
            access=_repo_access(repository, "pull"),
            follow_redirects=True,
            max_bytes=self.max_blob_bytes if max_bytes is None else max_bytes,
            what="blobs",
        )
        content = response.content
        computed = sha256_digest(content)
        if computed != digest:
            self._raise_mismatch(operation, digest, computed)
        return content

    def upload_blob(self, repository: str, data: bytes) -> str:
        """Upload ``data`` (monolithic POST + PUT ``?digest=``) unless it exists; its digest."""
        validate_repository_name(repository)
        digest = sha256_digest(data)
        if self.blob_exists(repository, digest):
            return digest
        access = _repo_access(repository, "pull", "push")
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
            access=_repo_access(repository, "pull", "push"),
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
            access=_repo_access(repository, "delete"),
            ok=(202, 200),
        )

    # -- plumbing --------------------------------------------------------------------------

    @staticmethod
    def _ref(repository: str, reference: str) -> str:
        return f"{repository}@{reference}" if is_digest(reference) else f"{repository}:{reference}"

    @staticmethod
    def _check_page_size(page_size: int) -> None:
        if not isinstance(page_size, int) or page_size < 1:
            raise InvalidReference(
                f"page_size must be a positive integer, got {page_size!r}",
                field="page_size",
                value=str(page_size),
            )

    def _raise_mismatch(self, operation: str, expected: str, actual: str) -> None:
        raise RegistryDigestMismatch(
            f"registry {self.name}: {operation} failed: digest mismatch "
            f"(expected {expected}, got {actual})",
            registry=self.name,
            operation=operation,
        )

    def _url(self, path_or_url: str) -> str:
        if path_or_url.startswith(("http://", "https://")):
            return path_or_url
        return self.base_url + path_or_url

    def _same_origin(self, url: str, operation: str) -> str:
        parts = urlsplit(url)
        if (parts.scheme, parts.netloc) != self._origin:
            raise RegistryError(
                f"registry {self.name}: {operation} failed: the registry pointed to another "
                f"origin ({parts.scheme}://{parts.netloc})",
                registry=self.name,
                operation=operation,
            )
        return url

    def _paginate(
        self,
        first: str,
        *,
        operation: str,
        access: Access,
        key: str,
        missing_is_empty: bool = False,
    ) -> Iterator[str]:
        url: str | None = self._url(first)
        seen: set[str] = set()
        while url and len(seen) < MAX_PAGES:
            seen.add(url)
            response = self._request(
                "GET", url, operation=operation, access=access, allow_404=missing_is_empty
            )
            if response.status_code == 404:
                code, _ = _registry_error_body(response)
                if code == "NAME_UNKNOWN":
                    return
                self._raise_for_status(response, operation)
            try:
                items = response.json().get(key) or []
            except (ValueError, AttributeError) as exc:
                raise RegistryError(
                    f"registry {self.name}: {operation} failed: the answer is not the "
                    "expected JSON",
                    registry=self.name,
                    operation=operation,
                    status=response.status_code,
                ) from exc
            yield from (str(item) for item in items)
            link = response.links.get("next", {}).get("url")
            url = self._same_origin(urljoin(response.url, link), operation) if link else None
            if url in seen:
                url = None

    def _delay(self, attempt: int) -> float:
        """Delay before ``attempt`` (2, 3, ...): backoff, 2*backoff, 4*backoff, ..."""
        return min(MAX_BACKOFF_SECONDS, self.backoff * (2 ** (attempt - 2)))

    def _request(
        self,
        method: str,
        path_or_url: str,
        *,
        operation: str,
        access: Access,
        ok: tuple[int, ...] = (200,),
        headers: Mapping[str, str] | None = None,
        data: bytes | None = None,
        allow_404: bool = False,
        follow_redirects: bool = False,
        max_bytes: int | None = None,
        what: str = "answers",
    ) -> requests.Response:
        """Send with authentication and retries; map failures to registry errors.

        ``follow_redirects``: only for blob reads. ``max_bytes`` (default
        ``max_response_bytes``) caps the body read into memory; ``what`` names the kind of
        answer in the error.
        """
        limit = (self.max_response_bytes if max_bytes is None else max_bytes, what)
        url = self._url(path_or_url)
        problem = ""
        status: int | None = None
        for attempt in range(1, self.attempts + 1):
            if attempt > 1:
                delay = self._delay(attempt)
                logger.warning(
                    "registry %s: %s attempt %d/%d failed: %s; retrying in %.2fs",
                    self.name,
                    operation,
                    attempt - 1,
                    self.attempts,
                    problem,
                    delay,
                )
                time.sleep(delay)
            try:
                response = self._send(
                    method,
                    url,
                    operation=operation,
                    access=access,
                    headers=headers,
                    data=data,
                    follow_redirects=follow_redirects,
                    limit=limit,
                )
            except BackendAddressDenied as exc:
                raise RegistryAddressDenied(
                    f"registry {self.name}: {operation} failed: {exc}",
                    registry=self.name,
                    operation=operation,
                ) from None
            except _RETRYABLE_EXCEPTIONS as exc:
                problem, status = _describe_exception(exc), None
                continue
            except requests.RequestException as exc:
                raise RegistryError(
                    f"registry {self.name}: {operation} failed: {type(exc).__name__}",
                    registry=self.name,
                    operation=operation,
                ) from exc
            if response.status_code >= 500:
                problem, _ = _status_summary(response)
                status = response.status_code
                response.close()
                continue
            if response.status_code in ok or (allow_404 and response.status_code == 404):
                return response
            if response.status_code in outbound.REDIRECT_STATUSES:
                outbound.refuse_redirect(response, registry=self.name, operation=operation)
            self._raise_for_status(response, operation)
        tries = f"{self.attempts} attempt{'s' if self.attempts != 1 else ''}"
        raise RegistryUnavailable(
            f"registry {self.name}: {operation} failed: {problem} after {tries}",
            registry=self.name,
            operation=operation,
            status=status,
            http_status=502 if status is not None else 503,
        )

    def _raise_for_status(self, response: requests.Response, operation: str) -> None:
        summary, code = _status_summary(response)
        status = response.status_code
        message = f"registry {self.name}: {operation} failed: {summary}"
        kwargs: dict[str, Any] = {
            "registry": self.name,
            "operation": operation,
            "status": status,
            "registry_code": code,
        }
        if status in (401, 403):
            raise RegistryAuthError(message, **kwargs)
        if status == 404:
            raise RegistryNotFound(message, **kwargs)
        if 400 <= status < 500:
            raise RegistryRequestRejected(message, **kwargs)
        raise RegistryError(message, **kwargs)

    # -- authentication --------------------------------------------------------------------

    def _basic_header(self) -> str:
        raw = f"{self.username}:{self._password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    @property
    def _has_credentials(self) -> bool:
        return self.username is not None and self._password is not None

    def _authorization(self, access: Access) -> tuple[str | None, _CachedToken | None]:
        if self._static_token:
            return f"Bearer {self._static_token}", None
        if self._use_basic:
            return self._basic_header(), None
        needed = self._scope_aliases.get(_access_key(access), access)
        cached = self._cached_token(needed)
        if cached is not None:
            return f"Bearer {cached.value}", cached
        return None, None

    def _send(
        self,
        method: str,
        url: str,
        *,
        operation: str,
        access: Access,
        headers: Mapping[str, str] | None,
        data: bytes | None,
        follow_redirects: bool = False,
        limit: tuple[int, str] = (MAX_RESPONSE_BYTES, "answers"),
    ) -> requests.Response:
        """One attempt: send, and answer one 401 challenge (basic or bearer) if we can."""
        request_headers = {"User-Agent": USER_AGENT, **(headers or {})}
        authorization, used_token = self._authorization(access)
        if authorization:
            request_headers["Authorization"] = authorization
        response = self._http(method, url, request_headers, data, operation, limit)
        if response.status_code == 401 and not self._static_token:
            challenge = parse_challenge(response.headers.get("WWW-Authenticate", ""))
            if challenge is None:
                return response
            scheme, params = challenge
            if scheme == "basic":
                if not self._has_credentials or self._use_basic:
                    return response
                self._use_basic = True
                request_headers["Authorization"] = self._basic_header()
            elif scheme == "bearer" and params.get("realm"):
                challenged = parse_scopes(params.get("scope", ""))
                if challenged != access:
                    self._scope_aliases[_access_key(access)] = challenged
                if used_token is not None:
                    # Rejected (expired early, revoked, or too narrow): never offer it again.
                    self._drop_token(used_token)
                cached = self._cached_token(challenged)
                token = (
                    cached.value
                    if cached is not None
                    else self._fetch_token(
                        params["realm"], params.get("service", ""), challenged, operation
                    )
                )
                request_headers["Authorization"] = f"Bearer {token}"
            else:
                return response
            response.close()
            response = self._http(method, url, request_headers, data, operation, limit)
        if follow_redirects:
            response = outbound.follow_redirects(
                response,
                send=lambda target, next_headers: self._http(
                    method, target, next_headers, None, operation, limit
                ),
                headers=request_headers,
                home=self._registry_origin,
                registry=self.name,
                operation=operation,
            )
        return response

    def _http(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        data: bytes | None,
        operation: str,
        limit: tuple[int, str],
    ) -> requests.Response:
        """One HTTP exchange, never following a redirect, the body read up to the limit."""
        response = self.session.request(
            method,
            url,
            headers=dict(headers),
            data=data,
            timeout=self.timeout,
            allow_redirects=False,
            stream=True,
        )
        max_bytes, what = limit
        outbound.read_body(
            response,
            method=method,
            registry=self.name,
            operation=operation,
            limit=max_bytes,
            what=what,
        )
        return response

    def _cached_token(self, needed: Access) -> _CachedToken | None:
        now = time.monotonic()
        with self._lock:
            self._tokens = [t for t in self._tokens if t.expires_at > now]
            for cached in self._tokens:
                if _covers(cached.access, needed):
                    return cached
        return None

    def _drop_token(self, token: _CachedToken) -> None:
        with self._lock:
            self._tokens = [t for t in self._tokens if t is not token]

    def _realm_allowed(self, realm: str) -> bool:
        """https, the registry's own origin, or an origin the configuration allows."""
        origin = outbound.origin(realm)
        return (
            origin[0] == "https"
            or origin == self._registry_origin
            or origin in self._allowed_realm_origins
        )

    def _fetch_token(self, realm: str, service: str, access: Access, operation: str) -> str:
        """Docker token flow: GET the realm for ``service`` and ``scope``; cache the token."""
        parts = urlsplit(realm)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise RegistryAuthError(
                f"registry {self.name}: {operation} failed: 401 with an unusable token realm",
                registry=self.name,
                operation=operation,
                status=401,
            )
        if not self._realm_allowed(realm):
            raise RegistryAuthError(
                f"registry {self.name}: {operation} failed: the token realm "
                f"{outbound.shown_origin(realm)} is neither https nor the registry's origin "
                "(REGISTRY_TOKEN_REALM_ALLOWED_ORIGINS may allow it)",
                registry=self.name,
                operation=operation,
                status=401,
            )
        params: list[tuple[str, str]] = []
        if service:
            params.append(("service", service))
        params.extend(("scope", scope) for scope in format_scopes(access))
        headers = {"User-Agent": USER_AGENT}
        if self._has_credentials:
            params.append(("account", str(self.username)))
            headers["Authorization"] = self._basic_header()
        response = self.session.get(
            realm,
            params=params,
            headers=headers,
            timeout=self.timeout,
            allow_redirects=False,
            stream=True,
        )
        outbound.read_body(
            response,
            method="GET",
            registry=self.name,
            operation=operation,
            limit=self.max_token_bytes,
            what="token endpoint answers",
        )
        if response.status_code >= 500:
            raise _TransientError(f"token endpoint answered {response.status_code}")
        if response.status_code != 200:
            raise RegistryAuthError(
                f"registry {self.name}: {operation} failed: the token endpoint refused "
                f"the request: {response.status_code}",
                registry=self.name,
                operation=operation,
                status=response.status_code,
            )
        try:
            body = response.json()
            value = body.get("token") or body.get("access_token")
            lifetime = int(body.get("expires_in") or DEFAULT_TOKEN_LIFETIME)
        except (ValueError, AttributeError, TypeError):
            value, lifetime = None, 0
        if not value or not isinstance(value, str):
            raise RegistryAuthError(
                f"registry {self.name}: {operation} failed: the token endpoint answered "
                "without a token",
                registry=self.name,
                operation=operation,
                status=response.status_code,
            )
        if lifetime <= 0:
            lifetime = DEFAULT_TOKEN_LIFETIME
        margin = min(10.0, lifetime / 4)
        cached = _CachedToken(
            realm=realm,
            service=service,
            access=access,
            value=value,
            expires_at=time.monotonic() + lifetime - margin,
        )
        with self._lock:
            self._tokens.append(cached)
        return value
