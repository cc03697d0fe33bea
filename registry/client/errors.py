"""How a failed exchange with the registry becomes a ``registry.errors`` domain error.

Transient failures (connection errors, timeouts, a token endpoint's 5xx) are retried by
the transport; everything else is mapped here to an error naming the registry, the
operation and the status.
"""

from __future__ import annotations

from typing import Any, NoReturn

import requests

from registry.errors import (
    RegistryAuthError,
    RegistryDigestMismatch,
    RegistryError,
    RegistryNotFound,
    RegistryRequestRejected,
)


class TransientError(Exception):
    """A failure worth retrying that is not a ``requests`` exception (token endpoint 5xx)."""


RETRYABLE_EXCEPTIONS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    TransientError,
)


def describe_exception(exc: Exception) -> str:
    if isinstance(exc, TransientError):
        return str(exc)
    if isinstance(exc, requests.Timeout):
        return f"timed out ({type(exc).__name__})"
    if isinstance(exc, requests.ConnectionError):
        return f"could not connect ({type(exc).__name__})"
    return type(exc).__name__


def registry_error_body(response: requests.Response) -> tuple[str | None, str | None]:
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


def status_summary(response: requests.Response) -> tuple[str, str | None]:
    code, message = registry_error_body(response)
    summary = str(response.status_code)
    if code:
        summary += f" {code}"
        if message:
            summary += f" ({message})"
    elif response.reason:
        summary += f" {response.reason}"
    return summary, code


def raise_for_status(response: requests.Response, *, registry: str, operation: str) -> NoReturn:
    """The error for an answer that is not one the operation expects."""
    summary, code = status_summary(response)
    status = response.status_code
    message = f"registry {registry}: {operation} failed: {summary}"
    kwargs: dict[str, Any] = {
        "registry": registry,
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


def raise_digest_mismatch(*, registry: str, operation: str, expected: str, actual: str) -> NoReturn:
    raise RegistryDigestMismatch(
        f"registry {registry}: {operation} failed: digest mismatch "
        f"(expected {expected}, got {actual})",
        registry=registry,
        operation=operation,
    )
