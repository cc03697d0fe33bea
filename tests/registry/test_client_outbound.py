"""Issue #9, point 3: the registry client's requests stay where they belong.

Redirects are refused except for blob reads (which may go to storage, without the
registry's ``Authorization``), a token realm must be https or the registry's origin, every
answer read into memory is capped, and ``REGISTRY_BACKEND_DENY_NETWORKS`` is enforced
when an instance is saved and on every connection after DNS resolution. All traffic stays
on loopback: "another origin" is another port on 127.0.0.1 (or ``localhost``).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from config.errors import ValidationFailed
from registry import services
from registry.client import MAX_MANIFEST_BYTES, OCI_MANIFEST, RegistryClient
from registry.errors import (
    RegistryAddressDenied,
    RegistryAuthError,
    RegistryRedirectRefused,
    RegistryResponseTooLarge,
)
from registry.models import Instance
from tests.registry.conftest import make_instance
from tests.support.stub_registry import Reply, SeenRequest, StubRegistry
from tests.support.token_server import TokenServer

DIGEST = "sha256:" + "a" * 64
LOOPBACK = ["127.0.0.0/8", "::1/128"]


def _ok(request: SeenRequest) -> Reply:
    body = b'{"schemaVersion": 2}'
    return Reply(200, body, {"Content-Type": OCI_MANIFEST})


def _redirect_to(target: str) -> Callable[[SeenRequest], Reply]:
    def handler(request: SeenRequest) -> Reply:
        return Reply(302, headers={"Location": target + request.path})

    return handler


OPERATIONS: dict[str, Callable[[RegistryClient], Any]] = {
    "GET manifest": lambda c: c.get_manifest("prod/app", "v1"),
    "HEAD manifest": lambda c: c.head_manifest("prod/app", "v1"),
    "PUT manifest": lambda c: c.put_manifest("prod/app", "v1", b"{}", OCI_MANIFEST),
    "DELETE manifest": lambda c: c.delete_manifest("prod/app", DIGEST),
    "GET tags": lambda c: list(c.list_tags("prod/app")),
    "GET /v2/": lambda c: c.ping(),
}


# --- redirects ----------------------------------------------------------------------------


@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_a_redirect_to_another_origin_is_refused_outside_blob_reads(operation):
    with StubRegistry(_ok) as elsewhere, StubRegistry(_redirect_to(elsewhere.url)) as registry:
        client = RegistryClient(registry.url, token="registry-token", retries=1)

        with pytest.raises(RegistryRedirectRefused) as caught:
            OPERATIONS[operation](client)

    assert "only blob downloads may be redirected" in str(caught.value)
    assert elsewhere.url in str(caught.value)
    assert caught.value.status == 302
    assert len(registry.requests) == 1
    assert elsewhere.requests == []  # nothing went to the other origin


def test_a_redirect_on_the_same_origin_is_refused_for_a_manifest_too():
    def handler(request: SeenRequest) -> Reply:
        if request.path.startswith("/moved"):
            return _ok(request)
        return Reply(301, headers={"Location": "/moved" + request.path})

    with StubRegistry(handler) as registry, pytest.raises(RegistryRedirectRefused):
        RegistryClient(registry.url, retries=1).get_manifest("prod/app", "v1")

    assert [r.path for r in registry.requests] == ["/v2/prod/app/manifests/v1"]


def test_a_blob_read_follows_a_redirect_to_storage_without_the_authorization():
    blob = b"signature payload"
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()

    def storage_handler(request: SeenRequest) -> Reply:
        return Reply(200, b"" if request.method == "HEAD" else blob)

    with StubRegistry(storage_handler) as storage:

        def registry_handler(request: SeenRequest) -> Reply:
            if request.headers.get("Authorization") != "Bearer registry-token":
                return Reply(401)
            return Reply(307, headers={"Location": f"{storage.url}/bucket/blob?signature=x"})

        with StubRegistry(registry_handler) as registry:
            client = RegistryClient(registry.url, token="registry-token", retries=1)

            content = client.get_blob("prod/app", digest)
            exists = client.blob_exists("prod/app", digest)

    assert (content, exists) == (blob, True)
    assert [r.method for r in registry.requests] == ["GET", "HEAD"]
    assert all(r.headers.get("Authorization") == "Bearer registry-token" for r in registry.requests)
    assert [(r.method, r.path) for r in storage.requests] == [
        ("GET", "/bucket/blob?signature=x"),
        ("HEAD", "/bucket/blob?signature=x"),
    ]
    assert all("Authorization" not in r.headers for r in storage.requests)


def test_a_blob_redirect_chain_is_bounded():
    def loop(request: SeenRequest) -> Reply:
        return Reply(302, headers={"Location": "/again"})

    with StubRegistry(loop) as registry, pytest.raises(RegistryRedirectRefused) as caught:
        RegistryClient(registry.url, retries=1).get_blob("prod/app", DIGEST)

    assert "more than 5 redirects" in str(caught.value)
    assert len(registry.requests) == 6  # the first request and five redirects


# --- the token realm ----------------------------------------------------------------------


@pytest.mark.registry_server
def test_an_http_realm_on_another_origin_is_refused_and_gets_no_credentials(
    registry_server_factory, tmp_path
):
    with TokenServer(workdir=tmp_path, users={"alice": "alice-password"}) as tokens:
        registry = registry_server_factory(auth=tokens.registry_auth_config())
        client = RegistryClient(registry.url, username="alice", password="alice-password")

        with pytest.raises(RegistryAuthError) as caught:
            client.get_manifest("prod/app", "v1")

        assert tokens.requests == []  # neither the password nor any request went there
        message = str(caught.value)
        assert f"the token realm {tokens.origin} is neither https nor the registry's origin" in (
            message
        )
        assert "alice-password" not in message


@pytest.mark.registry_server
def test_an_http_realm_is_used_when_the_setting_allows_its_origin(
    registry_server_factory, tmp_path, settings, db
):
    with TokenServer(workdir=tmp_path, users={"alice": "alice-password"}) as tokens:
        registry = registry_server_factory(auth=tokens.registry_auth_config())
        instance, _ = make_instance(
            backend_url=registry.url,
            auth_type="basic",
            username="alice",
            secret="alice-password",
        )
        with pytest.raises(RegistryAuthError):
            instance.registry_client(retries=1).head_manifest("prod/app", "v1")
        assert tokens.requests == []

        settings.REGISTRY_TOKEN_REALM_ALLOWED_ORIGINS = [tokens.origin]
        assert instance.registry_client().head_manifest("prod/app", "v1") is None

        assert [(r.user, r.scopes) for r in tokens.requests] == [
            ("alice", ["repository:prod/app:pull"])
        ]


def test_an_http_realm_on_the_registry_origin_is_accepted():
    def handler(request: SeenRequest) -> Reply:
        if request.path.startswith("/token"):
            return Reply(200, json.dumps({"token": "t-1", "expires_in": 60}).encode())
        if request.headers.get("Authorization") == "Bearer t-1":
            return _ok(request)
        return Reply(401, headers={"WWW-Authenticate": f'Bearer realm="{realm}"'})

    with StubRegistry(handler) as registry:
        realm = f"{registry.url}/token"
        manifest = RegistryClient(registry.url, retries=1).get_manifest("prod/app", "v1")

    assert manifest.media_type == OCI_MANIFEST
    assert [r.path.split("?")[0] for r in registry.requests] == [
        "/v2/prod/app/manifests/v1",
        "/token",
        "/v2/prod/app/manifests/v1",
    ]


# --- size caps ----------------------------------------------------------------------------


def test_an_oversize_manifest_is_refused_with_a_clear_error():
    big = b" " * (MAX_MANIFEST_BYTES + 1)

    stub = StubRegistry(lambda request: Reply(200, big, {"Content-Type": OCI_MANIFEST}))
    with stub, pytest.raises(RegistryResponseTooLarge) as caught:
        RegistryClient(stub.url, retries=1).get_manifest("prod/app", "v1")

    assert str(caught.value) == (
        f"registry {stub.url}: GET manifest prod/app:v1 failed: the answer is larger than "
        f"{MAX_MANIFEST_BYTES} bytes, the most Signet reads for manifests"
    )
    assert caught.value.code == "FailedOperation.RegistryResponseTooLarge"
    assert len(stub.requests) == 1  # not retried


class ChunkedServer:
    """Answers every GET with ``size`` bytes sent chunked: no Content-Length to check."""

    def __init__(self, size: int) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", OCI_MANIFEST)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                remaining = size
                try:
                    while remaining:
                        part = min(remaining, 256 * 1024)
                        self.wfile.write(b"%x\r\n%s\r\n" % (part, b"x" * part))
                        remaining -= part
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped reading: what the test wants

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_an_oversize_chunked_manifest_is_refused_while_reading():
    with ChunkedServer(64 * 1024 * 1024) as url, pytest.raises(RegistryResponseTooLarge) as caught:
        RegistryClient(url, retries=1).get_manifest("prod/app", "v1")

    assert f"larger than {MAX_MANIFEST_BYTES} bytes" in str(caught.value)


def test_an_oversize_token_answer_is_refused_with_a_clear_error():
    def handler(request: SeenRequest) -> Reply:
        if request.path.startswith("/token"):
            padding = "x" * (1024 * 1024)
            return Reply(200, json.dumps({"token": "t-1", "padding": padding}).encode())
        return Reply(401, headers={"WWW-Authenticate": f'Bearer realm="{realm}"'})

    with StubRegistry(handler) as registry:
        realm = f"{registry.url}/token"
        with pytest.raises(RegistryResponseTooLarge) as caught:
            RegistryClient(registry.url, retries=1).get_manifest("prod/app", "v1")

    assert "the most Signet reads for token endpoint answers" in str(caught.value)
    assert [r.path.split("?")[0] for r in registry.requests] == [
        "/v2/prod/app/manifests/v1",
        "/token",
    ]


def test_an_oversize_signature_blob_is_refused():
    big = b"x" * (4 * 1024 * 1024 + 1)

    stub = StubRegistry(lambda request: Reply(200, big))
    with stub, pytest.raises(RegistryResponseTooLarge) as caught:
        RegistryClient(stub.url, retries=1).get_blob("prod/app", DIGEST)

    assert "the most Signet reads for blobs" in str(caught.value)


# --- REGISTRY_BACKEND_DENY_NETWORKS -------------------------------------------------------


def test_link_local_networks_are_denied_by_default(settings):
    assert settings.REGISTRY_BACKEND_DENY_NETWORKS == ["169.254.0.0/16", "fe80::/10"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "backend_url",
    [
        "http://169.254.169.254",
        "http://169.254.169.254:80/latest",
        "http://[fe80::1]:5000",
        "http://[::ffff:169.254.169.254]:5000",
    ],
)
def test_a_backend_url_in_a_denied_network_is_refused_at_save(backend_url):
    with pytest.raises(ValidationFailed) as caught:
        make_instance(backend_url=backend_url)

    assert "REGISTRY_BACKEND_DENY_NETWORKS" in caught.value.fields["backend_url"][0]
    assert not Instance.objects.exists()


@pytest.mark.django_db
def test_a_host_name_resolving_into_a_denied_network_is_refused_at_save(settings):
    instance, _ = make_instance(backend_url="http://127.0.0.1:5000")
    settings.REGISTRY_BACKEND_DENY_NETWORKS = LOOPBACK

    with pytest.raises(ValidationFailed) as caught:
        services.update_instance(instance=instance, backend_url="http://localhost:5000")

    assert "localhost is (or resolves to)" in caught.value.fields["backend_url"][0]
    assert Instance.objects.get().backend_url == "http://127.0.0.1:5000"


@pytest.mark.django_db
def test_the_api_refuses_a_denied_backend_url_with_400(superuser_client):
    response = superuser_client.post(
        "/api/v1/registry/instances/",
        {
            "name": "meta",
            "backend_url": "http://169.254.169.254",
            "default_domain": "meta.example.test",
        },
        format="json",
    )

    assert response.status_code == 400, response.content
    assert "backend_url" in response.json()["fields"]
    assert not Instance.objects.exists()


@pytest.fixture
def stub_registry() -> Iterator[StubRegistry]:
    with StubRegistry(lambda request: Reply(200, b"{}")) as stub:
        yield stub


@pytest.mark.django_db
def test_a_denied_address_is_refused_at_connect_time_after_dns_resolution(settings, stub_registry):
    port = stub_registry.server.server_address[1]
    instance, _ = make_instance(backend_url=f"http://localhost:{port}")
    instance.registry_client().ping()  # allowed while loopback is not denied
    assert len(stub_registry.requests) == 1

    # The network policy changes (or the name now resolves elsewhere): no connection.
    settings.REGISTRY_BACKEND_DENY_NETWORKS = LOOPBACK
    with pytest.raises(RegistryAddressDenied) as caught:
        Instance.objects.get(pk=instance.pk).registry_client().ping()

    assert "inside 127.0.0.0/8" in str(caught.value) or "inside ::1/128" in str(caught.value)
    assert "localhost" not in str(caught.value).split(":", 1)[1]  # readers may see it
    assert len(stub_registry.requests) == 1


def test_a_blob_redirect_into_a_denied_network_is_not_followed(stub_registry):
    port = stub_registry.server.server_address[1]

    def handler(request: SeenRequest) -> Reply:
        return Reply(307, headers={"Location": f"http://127.0.0.2:{port}/bucket/blob"})

    with StubRegistry(handler) as registry:
        client = RegistryClient(
            registry.url, retries=1, deny_networks=[ipaddress.ip_network("127.0.0.2/32")]
        )
        with pytest.raises(RegistryAddressDenied):
            client.get_blob("prod/app", DIGEST)

    assert len(registry.requests) == 1
    assert stub_registry.requests == []
