"""Sending one request to a registry: session, outbound rules, authentication, retries.

- retries with exponential backoff on connection errors, timeouts and 5xx answers, never
  on 4xx; every failure becomes a ``registry.errors`` domain error naming the registry,
  the operation and the status (``registry.client.errors``);
- no redirect is followed except for blob reads (a registry may send those to its
  storage; ``Authorization`` is then only forwarded to the registry's own origin), every
  answer is read into memory up to a size cap (``RegistryResponseTooLarge`` above it),
  and with ``deny_networks`` no connection is opened to an address of those networks,
  checked after DNS resolution (``registry.outbound``, ``registry.network``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NoReturn
from urllib.parse import urlsplit

import requests

from registry import outbound
from registry.client.auth import MAX_TOKEN_ANSWER_BYTES, USER_AGENT, Access, TokenAuth
from registry.client.errors import (
    RETRYABLE_EXCEPTIONS,
    describe_exception,
    raise_digest_mismatch,
    raise_for_status,
    status_summary,
)
from registry.errors import RegistryAddressDenied, RegistryError, RegistryUnavailable
from registry.metrics import count_request_errors
from registry.network import BackendAddressDenied, DenyNetworksAdapter, Network

# The client's one logger, whichever of its modules logs.
logger = logging.getLogger("registry.client")

MAX_BACKOFF_SECONDS = 10.0
# Distribution refuses manifests above 4 MiB; a signature blob is a few hundred bytes.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_BLOB_BYTES = 4 * 1024 * 1024
MAX_RESPONSE_BYTES = 4 * 1024 * 1024  # listings, error bodies, anything else


@dataclass(frozen=True)
class _Retry:
    """A failed try worth another: what went wrong, and the HTTP status if one came."""

    problem: str
    status: int | None


class Transport(TokenAuth):
    """The plumbing of ``RegistryClient`` (its constructor arguments are documented there)."""

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
        trust_env: bool = False,
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
        self._own_session = session is None
        if session is None:
            session = requests.Session()
            # With trust_env every request looks up proxy variables and reads ~/.netrc.
            session.trust_env = trust_env
        self.session = session
        if deny_networks:
            adapter = DenyNetworksAdapter(deny_networks)
            self.session.mount("http://", adapter)
            self.session.mount("https://", adapter)
        self._allowed_realm_origins = frozenset(map(outbound.origin, allowed_realm_origins))
        self.max_manifest_bytes = max_manifest_bytes
        self.max_blob_bytes = max_blob_bytes
        self.max_token_bytes = max_token_bytes
        self.max_response_bytes = max_response_bytes
        self._init_auth()

    def __repr__(self) -> str:
        return f"<RegistryClient {self.name}>"

    def close(self) -> None:
        if self._own_session:
            self.session.close()

    # -- failures --------------------------------------------------------------------------

    def _raise_for_status(self, response: requests.Response, operation: str) -> NoReturn:
        raise_for_status(response, registry=self.name, operation=operation)

    def _raise_mismatch(self, operation: str, expected: str, actual: str) -> NoReturn:
        raise_digest_mismatch(
            registry=self.name, operation=operation, expected=expected, actual=actual
        )

    # -- addresses -------------------------------------------------------------------------

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

    # -- sending ---------------------------------------------------------------------------

    def _delay(self, attempt: int) -> float:
        """Delay before ``attempt`` (2, 3, ...): backoff, 2*backoff, 4*backoff, ..."""
        return min(MAX_BACKOFF_SECONDS, self.backoff * (2 ** (attempt - 2)))

    def _wait_before(self, attempt: int, operation: str, problem: str) -> None:
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

    @count_request_errors
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
        retry = _Retry(problem="", status=None)
        for attempt in range(1, self.attempts + 1):
            if attempt > 1:
                self._wait_before(attempt, operation, retry.problem)
            outcome = self._attempt(
                method,
                url,
                operation=operation,
                access=access,
                ok=ok,
                allow_404=allow_404,
                headers=headers,
                data=data,
                follow_redirects=follow_redirects,
                limit=limit,
            )
            if not isinstance(outcome, _Retry):
                return outcome
            retry = outcome
        tries = f"{self.attempts} attempt{'s' if self.attempts != 1 else ''}"
        raise RegistryUnavailable(
            f"registry {self.name}: {operation} failed: {retry.problem} after {tries}",
            registry=self.name,
            operation=operation,
            status=retry.status,
            http_status=502 if retry.status is not None else 503,
        )

    def _attempt(
        self,
        method: str,
        url: str,
        *,
        operation: str,
        access: Access,
        ok: tuple[int, ...],
        allow_404: bool,
        headers: Mapping[str, str] | None,
        data: bytes | None,
        follow_redirects: bool,
        limit: tuple[int, str],
    ) -> requests.Response | _Retry:
        """One try of ``_request``: the accepted answer, a failure worth retrying, or the
        registry error that ends the request."""
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
        except RETRYABLE_EXCEPTIONS as exc:
            return _Retry(problem=describe_exception(exc), status=None)
        except requests.RequestException as exc:
            raise RegistryError(
                f"registry {self.name}: {operation} failed: {type(exc).__name__}",
                registry=self.name,
                operation=operation,
            ) from exc
        if response.status_code >= 500:
            problem, _ = status_summary(response)
            status = response.status_code
            response.close()
            return _Retry(problem=problem, status=status)
        if response.status_code in ok or (allow_404 and response.status_code == 404):
            return response
        if response.status_code in outbound.REDIRECT_STATUSES:
            outbound.refuse_redirect(response, registry=self.name, operation=operation)
        self._raise_for_status(response, operation)

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
        if (
            response.status_code == 401
            and not self._static_token
            and self._answer_challenge(
                response,
                request_headers,
                access=access,
                used_token=used_token,
                operation=operation,
            )
        ):
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
