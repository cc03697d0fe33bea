"""Where the registry client's answers may come from, and how much of them it reads.

Helpers of ``registry.client`` (kept apart so the client stays readable): origins, the
capped body read, and the redirect rule. Only blob reads follow redirects (a registry may
send them to its storage); everything else refuses them. ``Authorization`` is carried
only to the registry's own origin, at most ``MAX_REDIRECTS`` hops, never from https down
to http.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NoReturn
from urllib.parse import urljoin, urlsplit

import requests

from registry.errors import RegistryRedirectRefused, RegistryResponseTooLarge

MAX_REDIRECTS = 5
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
_READ_CHUNK = 64 * 1024
_DEFAULT_PORTS = {"http": 80, "https": 443}

Origin = tuple[str, str]


def origin(url: str) -> Origin:
    """(scheme, host:port) with the default port spelled out, for origin comparisons."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme, 0)
    except ValueError:
        port = 0
    host = (parts.hostname or "").lower()
    return scheme, f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def shown_origin(url: str) -> str:
    scheme, netloc = origin(url)
    return f"{scheme}://{netloc}"


def read_body(
    response: requests.Response,
    *,
    method: str,
    registry: str,
    operation: str,
    limit: int,
    what: str,
) -> None:
    """Load a streamed body into ``response.content``, refusing more than ``limit`` bytes
    (declared or actually sent, after content decoding)."""
    declared = response.headers.get("Content-Length") or ""
    too_large = method != "HEAD" and declared.isdigit() and int(declared) > limit
    chunks: list[bytes] = []
    total = 0
    if not too_large:
        for chunk in response.iter_content(_READ_CHUNK):
            total += len(chunk)
            if total > limit:
                too_large = True
                break
            chunks.append(chunk)
    if too_large:
        response.close()
        raise RegistryResponseTooLarge(
            f"registry {registry}: {operation} failed: the answer is larger than "
            f"{limit} bytes, the most Signet reads for {what}",
            registry=registry,
            operation=operation,
            status=response.status_code,
            limit=limit,
        )
    response._content = b"".join(chunks)
    response._content_consumed = True


def refuse_redirect(response: requests.Response, *, registry: str, operation: str) -> NoReturn:
    target = urljoin(response.url, response.headers.get("Location") or "")
    raise RegistryRedirectRefused(
        f"registry {registry}: {operation} failed: {response.status_code} redirect to "
        f"{shown_origin(target)}; only blob downloads may be redirected",
        registry=registry,
        operation=operation,
        status=response.status_code,
    )


def follow_redirects(
    response: requests.Response,
    *,
    send: Callable[[str, Mapping[str, str]], requests.Response],
    headers: Mapping[str, str],
    home: Origin,
    registry: str,
    operation: str,
) -> requests.Response:
    """Follow a blob read's redirects with ``send(url, headers)``, dropping
    ``Authorization`` outside ``home`` (storage URLs carry their own signature)."""
    for _ in range(MAX_REDIRECTS):
        location = response.headers.get("Location")
        if response.status_code not in REDIRECT_STATUSES or not location:
            return response
        target = urljoin(response.url, location)
        scheme = urlsplit(target).scheme
        if scheme not in ("http", "https") or (
            scheme == "http" and urlsplit(response.url).scheme == "https"
        ):
            raise RegistryRedirectRefused(
                f"registry {registry}: {operation} failed: redirect to "
                f"{shown_origin(target)} leaves https (or http)",
                registry=registry,
                operation=operation,
                status=response.status_code,
            )
        next_headers = dict(headers)
        if origin(target) != home:
            next_headers.pop("Authorization", None)
        response.close()
        response = send(target, next_headers)
    if response.status_code not in REDIRECT_STATUSES:
        return response
    raise RegistryRedirectRefused(
        f"registry {registry}: {operation} failed: more than {MAX_REDIRECTS} redirects",
        registry=registry,
        operation=operation,
        status=response.status_code,
    )
