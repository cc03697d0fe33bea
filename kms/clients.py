"""The one interface through which other apps use KMS keys, and its two backends.

``LocalKmsClient`` calls ``kms.services.operations`` in this process. ``HttpKmsClient``
calls a Signet KMS over its REST API (``/api/v1/kms/``), so the private keys
can live in another process or machine. Both raise the same ``kms.errors``
classes for the same failures; the HTTP backend adds ``KmsUnavailable`` (the
KMS cannot be reached or answers outside the protocol) and ``KmsAuthFailure``
(the KMS refuses the client's token). Choose the backend with
``get_kms_client()`` (setting ``KMS_BACKEND``).

Neither the token nor any key material ever appears in an exception message.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote, urlsplit, urlunsplit

import requests
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from kms import crypto
from kms.errors import ERRORS_BY_CODE, InvalidParameter, KeyNotFound, KmsError, KmsUnavailable
from kms.metrics import timed_sign
from kms.selectors import describe_key
from kms.services import operations
from kms.services.operations import PublicKeyInfo

API_PREFIX = "/api/v1/kms"


@dataclass(frozen=True)
class KeyDescription:
    key_id: str
    alias: str
    key_usage: str
    key_state: str
    region: str
    fingerprint: str


class KmsSigner(Protocol):
    def sign(
        self, *, key_id: str, message: bytes, algorithm: str, message_type: str = crypto.RAW
    ) -> bytes: ...


class KmsClient(Protocol):
    def signing_batch(self) -> KmsSigner:
        """A signer for one batch of work (many ``sign`` calls in a row, one thread):
        what each signature needs to know about its key and grant may be read once
        for the batch, for a short time (``operations.BATCH_SECONDS``). Drop it at the
        end of the batch."""
        ...

    def describe_key(self, key_id: str) -> KeyDescription: ...

    def get_public_key(self, key_id: str) -> PublicKeyInfo: ...

    def sign(
        self, *, key_id: str, message: bytes, algorithm: str, message_type: str = crypto.RAW
    ) -> bytes: ...

    def verify(
        self,
        *,
        key_id: str,
        message: bytes,
        signature: bytes,
        algorithm: str,
        message_type: str = crypto.RAW,
    ) -> bool: ...


class KmsAuthFailure(KmsError):
    """The remote KMS refused the client's credentials or their permissions."""

    code = "AuthFailure"
    http_status = 503
    default_message = "The KMS refused this client's credentials."


# --- local --------------------------------------------------------------------


class LocalKmsClient:
    """Keys in this process's database, through ``kms.services.operations``.

    ``service`` names the service signing (e.g. ``"registry-signing"``); its
    authorization is then required for every signature.
    """

    def __init__(self, *, service: str | None = None) -> None:
        self.service = service

    def __repr__(self) -> str:
        return f"LocalKmsClient(service={self.service!r})"

    def describe_key(self, key_id: str) -> KeyDescription:
        key = describe_key(key_id=key_id)
        return KeyDescription(
            key_id=str(key.key_id),
            alias=key.alias,
            key_usage=key.key_usage,
            key_state=key.state,
            region=key.region,
            fingerprint=key.public_key_fingerprint,
        )

    def get_public_key(self, key_id: str) -> PublicKeyInfo:
        return operations.get_public_key(key_id=key_id)

    def signing_batch(self) -> KmsSigner:
        return _LocalSigningBatch(operations.SigningBatch(on_behalf_of=self.service))

    @timed_sign("local")
    def sign(
        self, *, key_id: str, message: bytes, algorithm: str, message_type: str = crypto.RAW
    ) -> bytes:
        return operations.sign(
            key_id=key_id,
            message=message,
            algorithm=algorithm,
            message_type=message_type,
            on_behalf_of=self.service,
        )

    def verify(
        self,
        *,
        key_id: str,
        message: bytes,
        signature: bytes,
        algorithm: str,
        message_type: str = crypto.RAW,
    ) -> bool:
        return operations.verify(
            key_id=key_id,
            message=message,
            signature=signature,
            algorithm=algorithm,
            message_type=message_type,
        )


class _LocalSigningBatch:
    """``LocalKmsClient.signing_batch()``: the batch's reads, each signature timed."""

    def __init__(self, batch: operations.SigningBatch) -> None:
        self._batch = batch

    @timed_sign("local")
    def sign(
        self, *, key_id: str, message: bytes, algorithm: str, message_type: str = crypto.RAW
    ) -> bytes:
        return self._batch.sign(
            key_id=key_id, message=message, algorithm=algorithm, message_type=message_type
        )


# --- http ---------------------------------------------------------------------

_ERRNO = re.compile(r"\[Errno -?\d+\] [^'\")]+")


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class HttpKmsClient:
    """A Signet KMS reached over HTTP with an API token (KMS_HTTP_TOKEN).

    ``base_url`` is the server root (``http://kms.internal:8000``); the client
    appends ``/api/v1/kms/...``. ``timeout`` bounds both connecting and waiting
    for each answer. Requests are not retried and redirects are not followed.
    """

    def __init__(
        self,
        *,
        base_url: str,
        token: str,
        timeout: float = 5.0,
        service: str | None = None,
        session: requests.Session | None = None,
    ) -> None:
        parts = urlsplit(base_url or "")
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ImproperlyConfigured(
                "The KMS URL must be an http(s) server root such as http://127.0.0.1:8000, "
                f"not {_without_credentials(base_url or '')!r}."
            )
        if not token:
            raise ImproperlyConfigured("The KMS HTTP client needs a token.")
        if timeout <= 0:
            raise ImproperlyConfigured("The KMS HTTP timeout must be positive.")
        self.base_url = base_url.rstrip("/")
        self._display_url = _without_credentials(self.base_url)
        self._token = token
        self.timeout = float(timeout)
        self.service = service
        self._session = session or requests.Session()

    def __repr__(self) -> str:
        return f"HttpKmsClient(base_url={self._display_url!r}, service={self.service!r})"

    # -- the interface --

    def signing_batch(self) -> KmsSigner:
        # The remote KMS checks the key and the grant on every request: nothing to share.
        return self

    def describe_key(self, key_id: str) -> KeyDescription:
        body = self._request("GET", f"/keys/{self._key_segment(key_id)}/")
        return KeyDescription(
            key_id=self._field(body, "key_id"),
            alias=self._field(body, "alias"),
            key_usage=self._field(body, "key_usage"),
            key_state=self._field(body, "key_state"),
            region=self._field(body, "region"),
            fingerprint=self._field(body, "public_key_fingerprint"),
        )

    def get_public_key(self, key_id: str) -> PublicKeyInfo:
        body = self._request("GET", f"/keys/{self._key_segment(key_id)}/public-key/")
        return PublicKeyInfo(
            key_id=self._field(body, "key_id"),
            key_usage=self._field(body, "key_usage"),
            public_key_pem=self._field(body, "public_key_pem"),
            public_key_der_b64=self._field(body, "public_key"),
            fingerprint=self._field(body, "fingerprint"),
        )

    @timed_sign("http")
    def sign(
        self, *, key_id: str, message: bytes, algorithm: str, message_type: str = crypto.RAW
    ) -> bytes:
        payload: dict[str, Any] = {
            "message": _b64(message),
            "algorithm": algorithm,
            "message_type": message_type,
        }
        if self.service is not None:
            payload["service"] = self.service
        path = f"/keys/{self._key_segment(key_id)}/sign/"
        body = self._request("POST", path, payload)
        signature = self._field(body, "signature")
        try:
            return base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError):
            raise self._protocol_error("POST", path, 200, "signature is not base64") from None

    def verify(
        self,
        *,
        key_id: str,
        message: bytes,
        signature: bytes,
        algorithm: str,
        message_type: str = crypto.RAW,
    ) -> bool:
        payload = {
            "message": _b64(message),
            "signature": _b64(signature),
            "algorithm": algorithm,
            "message_type": message_type,
        }
        path = f"/keys/{self._key_segment(key_id)}/verify/"
        body = self._request("POST", path, payload)
        valid = body.get("signature_valid")
        if not isinstance(valid, bool):
            raise self._protocol_error("POST", path, 200, "signature_valid is not a boolean")
        return valid

    # -- plumbing --

    @staticmethod
    def _key_segment(key_id: str) -> str:
        # The server answers CmkNotFound for a malformed id; so do we, without a request
        # (and without letting the id reshape the URL path).
        try:
            return quote(str(uuid.UUID(str(key_id))), safe="")
        except (ValueError, TypeError, AttributeError):
            raise KeyNotFound(f"No key with KeyId {key_id!s} exists.", key_id=str(key_id)) from None

    def _field(self, body: dict[str, Any], name: str) -> str:
        value = body.get(name)
        if not isinstance(value, str):
            raise KmsUnavailable(f"KMS at {self._display_url} answered without the field {name!r}.")
        return value

    def _protocol_error(self, method: str, path: str, status: int, what: str) -> KmsUnavailable:
        return KmsUnavailable(
            f"KMS at {self._display_url} answered {method} {API_PREFIX}{path} with HTTP "
            f"{status}: {what}."
        )

    def _request(
        self, method: str, path: str, payload: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        url = f"{self.base_url}{API_PREFIX}{path}"
        try:
            response = self._session.request(
                method,
                url,
                json=payload,
                headers={"Authorization": f"Token {self._token}", "Accept": "application/json"},
                timeout=(self.timeout, self.timeout),
                allow_redirects=False,
            )
        except requests.Timeout as exc:
            phase = "connecting" if isinstance(exc, requests.ConnectTimeout) else "waiting"
            raise KmsUnavailable(
                f"KMS at {self._display_url} unreachable: no answer after {self.timeout:g}s "
                f"{phase} ({method} {API_PREFIX}{path})."
            ) from None
        except requests.RequestException as exc:
            found = _ERRNO.search(str(exc))
            reason = found.group(0).strip() if found else type(exc).__name__
            raise KmsUnavailable(
                f"KMS at {self._display_url} unreachable: {reason} ({method} {API_PREFIX}{path})."
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if 200 <= response.status_code < 300:
            if not isinstance(body, dict):
                raise self._protocol_error(method, path, response.status_code, "not a JSON object")
            return body
        raise self._error_from(method, path, response.status_code, body)

    def _error_from(
        self, method: str, path: str, status: int, body: Any
    ) -> KmsError | InvalidParameter:
        code = body.get("code") if isinstance(body, dict) else None
        message = body.get("message") if isinstance(body, dict) else None
        message = message if isinstance(message, str) and message else None
        if code in ERRORS_BY_CODE:
            details = body.get("details")
            details = details if isinstance(details, dict) else {}
            return ERRORS_BY_CODE[code](message, **{str(k): v for k, v in details.items()})
        if code in {InvalidParameter.code, "InvalidParameter"} and status == 400:
            fields = body.get("fields")
            return InvalidParameter(
                message or "Invalid input.", fields=fields if isinstance(fields, dict) else None
            )
        if status in {401, 403} and code is not None:
            hint = (
                "check the token (KMS_HTTP_TOKEN)"
                if status == 401
                else "grant the token's user the KMS permission it needs"
            )
            return KmsAuthFailure(
                f"KMS at {self._display_url} refused {method} {API_PREFIX}{path} with HTTP "
                f"{status} ({code}: {message or 'no message'}); {hint}."
            )
        if status == 429:
            # Throttled: transient, like an unreachable KMS; the caller's retry handles it.
            return KmsUnavailable(
                f"KMS at {self._display_url} is throttling {method} {API_PREFIX}{path} "
                f"(HTTP 429): {message or 'too many requests'}"
            )
        what = f"unexpected error code {code!r}" if code else "not a KMS error response"
        if isinstance(message, str) and code:
            what += f" ({message})"
        return self._protocol_error(method, path, status, what)


# --- choosing -----------------------------------------------------------------


def get_kms_client(*, service: str | None = None) -> KmsClient:
    """The client named by ``settings.KMS_BACKEND`` (``local`` or ``http``)."""
    backend = settings.KMS_BACKEND
    if backend == "local":
        return LocalKmsClient(service=service)
    if backend == "http":
        if not (settings.KMS_HTTP_URL and settings.KMS_HTTP_TOKEN):
            raise ImproperlyConfigured("KMS_BACKEND=http needs KMS_HTTP_URL and KMS_HTTP_TOKEN.")
        return HttpKmsClient(
            base_url=settings.KMS_HTTP_URL,
            token=settings.KMS_HTTP_TOKEN,
            timeout=settings.KMS_HTTP_TIMEOUT,
            service=service,
        )
    raise ImproperlyConfigured(f"KMS_BACKEND must be 'local' or 'http', not {backend!r}.")
