"""A Docker token-auth endpoint (the ``realm`` of ``auth: token``) for tests.

It issues RS256 JWTs that Docker Distribution 2.8 accepts: signed with an RSA key
whose self-signed certificate is the registry's ``rootcertbundle``, the certificate
carried in the JWT header ``x5c`` (standard base64 of the DER). Claims: ``iss``,
``sub``, ``aud`` (the service), ``exp``, ``nbf``, ``iat``, ``jti`` and ``access``
parsed from the requested ``scope`` parameters. The JWT is built by hand with
base64url and ``cryptography``: no JWT library needed.

Every token request is recorded in ``TokenServer.requests`` (user, service, scopes).
Requests without valid basic credentials get 401. ``permissions`` limits, per user,
which actions may be granted (the granted set is requested ∩ allowed).

    with TokenServer(workdir=tmp_path, users={"alice": "s3cret"}) as tokens:
        with RegistryServer(auth=tokens.registry_auth_config()) as registry:
            ...
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import json
import os
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

DEFAULT_SERVICE = "signet-test"
DEFAULT_ISSUER = "signet-test-issuer"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@functools.lru_cache(maxsize=1)
def _signing_material() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """One RSA key and self-signed certificate per test process (key generation is slow)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "signet test token issuer")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, certificate


def parse_scope(scope: str) -> list[dict[str, Any]]:
    """``"repository:ns/app:pull,push"`` -> ``[{"type", "name", "actions"}]`` (space-separated)."""
    access = []
    for item in scope.split():
        kind, _, rest = item.partition(":")
        name, _, actions = rest.rpartition(":")
        if kind and name:
            access.append(
                {"type": kind, "name": name, "actions": [a for a in actions.split(",") if a]}
            )
    return access


@dataclass
class TokenRequest:
    user: str | None
    account: str | None
    service: str | None
    scopes: list[str]


class TokenServer:
    """An HTTP token endpoint on ``127.0.0.1:<free port>/token`` in a background thread."""

    def __init__(
        self,
        *,
        workdir: str | os.PathLike[str],
        users: Mapping[str, str] | None = None,
        permissions: Mapping[str, Iterable[str]] | None = None,
        service: str = DEFAULT_SERVICE,
        issuer: str = DEFAULT_ISSUER,
        expires_in: int = 300,
    ) -> None:
        self.workdir = Path(workdir)
        self.users = dict(users or {})
        self.permissions = {user: set(actions) for user, actions in (permissions or {}).items()}
        self.service = service
        self.issuer = issuer
        self.expires_in = expires_in
        self.requests: list[TokenRequest] = []
        self._lock = threading.Lock()
        self._key, self._certificate = _signing_material()
        self.rootcertbundle = self.workdir / "token-root.pem"
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- registry wiring ---------------------------------------------------------------

    @property
    def realm(self) -> str:
        if self._server is None:
            raise RuntimeError("the token server is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/token"

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:<port>``: a plain-http realm clients must be told to allow."""
        return self.realm.removesuffix("/token")

    def registry_auth_config(self) -> dict[str, Any]:
        """The registry's ``auth:`` section pointing at this endpoint."""
        return {
            "token": {
                "realm": self.realm,
                "service": self.service,
                "issuer": self.issuer,
                "rootcertbundle": str(self.rootcertbundle),
            }
        }

    # -- tokens ------------------------------------------------------------------------

    def issue(self, *, subject: str, access: list[dict[str, Any]]) -> str:
        der = self._certificate.public_bytes(serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode("ascii")]}
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + self.expires_in,
            "nbf": now - 5,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        signing_input = ".".join(
            b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
        )
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64url(signature)}"

    def authenticate(self, authorization: str | None) -> str | None:
        """The user named by valid basic credentials, else None."""
        if not authorization or not authorization.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
        except ValueError:
            return None
        return user if user in self.users and self.users[user] == password else None

    def grant(self, user: str, requested: list[dict[str, Any]]) -> list[dict[str, Any]]:
        allowed = self.permissions.get(user)
        if allowed is None:
            return requested
        return [
            {**item, "actions": [a for a in item["actions"] if a in allowed]} for item in requested
        ]

    def scopes_seen(self) -> list[str]:
        with self._lock:
            return [scope for request in self.requests for scope in request.scopes]

    def _record(self, request: TokenRequest) -> None:
        with self._lock:
            self.requests.append(request)

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> TokenServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.rootcertbundle.write_bytes(self._certificate.public_bytes(serialization.Encoding.PEM))
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path != "/token":
                    self._reply(404, {"error": "not found"})
                    return
                query = parse_qs(parts.query)
                scopes = query.get("scope", [])
                user = owner.authenticate(self.headers.get("Authorization"))
                owner._record(
                    TokenRequest(
                        user=user,
                        account=next(iter(query.get("account", [])), None),
                        service=next(iter(query.get("service", [])), None),
                        scopes=scopes,
                    )
                )
                if user is None:
                    self._reply(401, {"errors": [{"code": "UNAUTHORIZED"}]})
                    return
                requested = [item for scope in scopes for item in parse_scope(scope)]
                token = owner.issue(subject=user, access=owner.grant(user, requested))
                self._reply(
                    200,
                    {
                        "token": token,
                        "access_token": token,
                        "expires_in": owner.expires_in,
                        "issued_at": dt.datetime.now(dt.UTC).isoformat(),
                    },
                )

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> TokenServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
