"""Authentication against a registry: HTTP basic, a static bearer token, and the Docker
token flow (``WWW-Authenticate: Bearer realm=...,service=...,scope=...``) with tokens
cached per scope until they expire.

A token ``realm`` must be https, the registry's own origin, or one of
``allowed_realm_origins``; credentials go to it only then. Credentials and tokens never
appear in messages or logs.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from collections.abc import MutableMapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests

from registry import outbound
from registry.client.errors import TransientError
from registry.errors import RegistryAuthError

USER_AGENT = "signet-registry-client/1"
DEFAULT_TOKEN_LIFETIME = 60
MAX_TOKEN_ANSWER_BYTES = 1024 * 1024

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


def access_key(access: Access) -> str:
    return " ".join(format_scopes(access))


def covers(granted: Access, needed: Access) -> bool:
    return all(
        actions <= granted.get(resource, frozenset()) for resource, actions in needed.items()
    )


def repo_access(repository: str, *actions: str) -> Access:
    return {("repository", repository): frozenset(actions)}


CATALOG_ACCESS: Access = {("registry", "catalog"): frozenset({"*"})}


@dataclass
class CachedToken:
    realm: str
    service: str
    access: Access
    value: str
    expires_at: float


class TokenAuth:
    """The authentication half of ``RegistryClient``: which ``Authorization`` a request
    carries, and how a 401 challenge is answered (once per attempt)."""

    name: str
    username: str | None
    _password: str | None
    _static_token: str | None
    session: requests.Session
    timeout: float | tuple[float, float]
    max_token_bytes: int
    _registry_origin: outbound.Origin
    _allowed_realm_origins: frozenset[outbound.Origin]

    def _init_auth(self) -> None:
        self._use_basic = False
        self._lock = threading.Lock()
        self._tokens: list[CachedToken] = []
        # What the registry actually challenged for a given request scope, learned on 401.
        self._scope_aliases: dict[str, Access] = {}

    def _basic_header(self) -> str:
        raw = f"{self.username}:{self._password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    @property
    def _has_credentials(self) -> bool:
        return self.username is not None and self._password is not None

    def _authorization(self, access: Access) -> tuple[str | None, CachedToken | None]:
        if self._static_token:
            return f"Bearer {self._static_token}", None
        if self._use_basic:
            return self._basic_header(), None
        needed = self._scope_aliases.get(access_key(access), access)
        cached = self._cached_token(needed)
        if cached is not None:
            return f"Bearer {cached.value}", cached
        return None, None

    def _answer_challenge(
        self,
        response: requests.Response,
        headers: MutableMapping[str, str],
        *,
        access: Access,
        used_token: CachedToken | None,
        operation: str,
    ) -> bool:
        """Set ``headers["Authorization"]`` for a 401's challenge (basic or bearer); False
        when there is nothing to answer it with (the 401 then stands)."""
        challenge = parse_challenge(response.headers.get("WWW-Authenticate", ""))
        if challenge is None:
            return False
        scheme, params = challenge
        if scheme == "basic":
            if not self._has_credentials or self._use_basic:
                return False
            self._use_basic = True
            headers["Authorization"] = self._basic_header()
            return True
        if scheme == "bearer" and params.get("realm"):
            token = self._bearer_for(params, access, used_token, operation)
            headers["Authorization"] = f"Bearer {token}"
            return True
        return False

    def _bearer_for(
        self,
        params: dict[str, str],
        access: Access,
        used_token: CachedToken | None,
        operation: str,
    ) -> str:
        challenged = parse_scopes(params.get("scope", ""))
        if challenged != access:
            self._scope_aliases[access_key(access)] = challenged
        if used_token is not None:
            # Rejected (expired early, revoked, or too narrow): never offer it again.
            self._drop_token(used_token)
        cached = self._cached_token(challenged)
        if cached is not None:
            return cached.value
        return self._fetch_token(params["realm"], params.get("service", ""), challenged, operation)

    def _cached_token(self, needed: Access) -> CachedToken | None:
        now = time.monotonic()
        with self._lock:
            self._tokens = [t for t in self._tokens if t.expires_at > now]
            for cached in self._tokens:
                if covers(cached.access, needed):
                    return cached
        return None

    def _drop_token(self, token: CachedToken) -> None:
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

    def _auth_error(self, operation: str, problem: str, status: int) -> RegistryAuthError:
        return RegistryAuthError(
            f"registry {self.name}: {operation} failed: {problem}",
            registry=self.name,
            operation=operation,
            status=status,
        )

    def _check_realm(self, realm: str, operation: str) -> None:
        parts = urlsplit(realm)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise self._auth_error(operation, "401 with an unusable token realm", 401)
        if not self._realm_allowed(realm):
            raise self._auth_error(
                operation,
                f"the token realm {outbound.shown_origin(realm)} is neither https nor the "
                "registry's origin (REGISTRY_TOKEN_REALM_ALLOWED_ORIGINS may allow it)",
                401,
            )

    def _fetch_token(self, realm: str, service: str, access: Access, operation: str) -> str:
        """Docker token flow: GET the realm for ``service`` and ``scope``; cache the token."""
        self._check_realm(realm, operation)
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
        value, lifetime = self._token_answer(response, operation)
        margin = min(10.0, lifetime / 4)
        cached = CachedToken(
            realm=realm,
            service=service,
            access=access,
            value=value,
            expires_at=time.monotonic() + lifetime - margin,
        )
        with self._lock:
            self._tokens.append(cached)
        return value

    def _token_answer(self, response: requests.Response, operation: str) -> tuple[str, int]:
        """The token and its lifetime in seconds from the token endpoint's answer."""
        if response.status_code >= 500:
            raise TransientError(f"token endpoint answered {response.status_code}")
        if response.status_code != 200:
            raise self._auth_error(
                operation,
                f"the token endpoint refused the request: {response.status_code}",
                response.status_code,
            )
        try:
            body = response.json()
            value = body.get("token") or body.get("access_token")
            lifetime = int(body.get("expires_in") or DEFAULT_TOKEN_LIFETIME)
        except (ValueError, AttributeError, TypeError):
            value, lifetime = None, 0
        if not value or not isinstance(value, str):
            raise self._auth_error(
                operation, "the token endpoint answered without a token", response.status_code
            )
        if lifetime <= 0:
            lifetime = DEFAULT_TOKEN_LIFETIME
        return value, lifetime
