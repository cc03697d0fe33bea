"""The KMS client interface: the local and the HTTP backend behave the same.

The HTTP backend talks to a real Signet server (pytest-django ``live_server``)
with a real API token; failures of the network are produced with real sockets.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import socket
import threading
import time
import uuid

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from django.core.exceptions import ImproperlyConfigured

from config.errors import DomainError
from kms import errors, services
from kms.clients import (
    HttpKmsClient,
    KeyDescription,
    KmsAuthFailure,
    LocalKmsClient,
    get_kms_client,
)
from kms.models import KeyUsage
from kms.services import operations
from kms.services.operations import PublicKeyInfo
from tests.factories import make_key, make_token, make_user

SERVICE = "registry-signing"
TOKEN_USER_PERMS = ["kms.view_key", "kms.use_key"]


@pytest.fixture
def token(transactional_db) -> str:
    user = make_user("kms-client", perms=TOKEN_USER_PERMS)
    return make_token(user)


@pytest.fixture
def http_client(live_server, token):
    def build(**kwargs) -> HttpKmsClient:
        return HttpKmsClient(base_url=live_server.url, token=token, **kwargs)

    return build


@pytest.fixture(params=["local", "http"])
def make_client(request, http_client):
    """Builds a client of each backend; every test using it runs against both."""

    def build(service: str | None = None):
        if request.param == "local":
            return LocalKmsClient(service=service)
        return http_client(service=service)

    return build


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the same answers from both backends ------------------------------------------


def test_it_describes_a_key(make_client):
    key = make_key("described", key_usage=KeyUsage.ECC, region="ap-beijing")

    description = make_client().describe_key(str(key.key_id))

    assert description == KeyDescription(
        key_id=str(key.key_id),
        alias="described",
        key_usage=KeyUsage.ECC.value,
        key_state="Enabled",
        region="ap-beijing",
        fingerprint=key.public_key_fingerprint,
    )


def test_it_describes_a_disabled_key_with_its_state(make_client):
    key = make_key("resting")
    services.disable_key(key_id=str(key.key_id))

    assert make_client().describe_key(str(key.key_id)).key_state == "Disabled"


def test_it_returns_the_public_key(make_client):
    key = make_key("public")

    info = make_client().get_public_key(str(key.key_id))

    assert isinstance(info, PublicKeyInfo)
    assert info == operations.get_public_key(key_id=str(key.key_id))
    der = base64.b64decode(info.public_key_der_b64)
    assert hashlib.sha256(der).hexdigest() == info.fingerprint == key.public_key_fingerprint


@pytest.mark.parametrize(
    "key_usage, algorithm",
    [
        (KeyUsage.RSA_2048, "RSA_PKCS1_SHA_256"),
        (KeyUsage.RSA_2048, "RSA_PSS_SHA_256"),
        (KeyUsage.ECC, "ECDSA_SHA_256"),
    ],
)
@pytest.mark.parametrize("message_type", ["RAW", "DIGEST"])
def test_it_signs_and_verifies_a_round_trip(make_client, key_usage, algorithm, message_type):
    key = make_key("round-trip", key_usage=key_usage)
    client = make_client()
    payload = b'{"critical": {"image": {"docker-manifest-digest": "sha256:00"}}}'
    message = hashlib.sha256(payload).digest() if message_type == "DIGEST" else payload

    signature = client.sign(
        key_id=str(key.key_id), message=message, algorithm=algorithm, message_type=message_type
    )

    assert (
        client.verify(
            key_id=str(key.key_id),
            message=message,
            signature=signature,
            algorithm=algorithm,
            message_type=message_type,
        )
        is True
    )
    tampered = signature[:-1] + bytes([signature[-1] ^ 1])
    assert (
        client.verify(
            key_id=str(key.key_id),
            message=message,
            signature=tampered,
            algorithm=algorithm,
            message_type=message_type,
        )
        is False
    )
    # Independently of the KMS: the signature is over SHA-256(payload).
    public = serialization.load_pem_public_key(key.public_key_pem.encode())
    if algorithm == "ECDSA_SHA_256":
        public.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
    elif algorithm == "RSA_PSS_SHA_256":
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        public.verify(signature, payload, pss, hashes.SHA256())
    else:
        public.verify(signature, payload, padding.PKCS1v15(), hashes.SHA256())


def test_it_signs_for_the_registry_service_once_it_is_authorized(make_client):
    key = make_key("registry")
    services.grant_service_authorization(service=SERVICE)

    signature = make_client(service=SERVICE).sign(
        key_id=str(key.key_id), message=b"image", algorithm="RSA_PKCS1_SHA_256"
    )

    assert operations.verify(
        key_id=str(key.key_id),
        message=b"image",
        signature=signature,
        algorithm="RSA_PKCS1_SHA_256",
    )


# --- the same errors from both backends ------------------------------------------


def _disabled():
    key = make_key("disabled")
    return str(services.disable_key(key_id=str(key.key_id)).key_id)


def _pending():
    key_id = _disabled()
    services.schedule_key_deletion(key_id=key_id, pending_window_in_days=7)
    return key_id


def _rsa():
    return str(make_key("rsa").key_id)


ERROR_CASES = {
    "unknown-key": (lambda: str(uuid.uuid4()), {}, errors.KeyNotFound),
    "malformed-key-id": (lambda: "../../admin", {}, errors.KeyNotFound),
    "disabled": (_disabled, {}, errors.CmkDisabled),
    "pending-delete": (_pending, {}, errors.KeyPendingDelete),
    "wrong-algorithm": (_rsa, {"algorithm": "ECDSA_SHA_256"}, errors.InvalidKeyUsage),
    "digest-wrong-length": (_rsa, {"message_type": "DIGEST"}, errors.InvalidParameter),
    "unknown-message-type": (_rsa, {"message_type": "HEX"}, errors.InvalidParameter),
}


@pytest.mark.parametrize("case", list(ERROR_CASES), ids=list(ERROR_CASES))
def test_it_raises_the_domain_error_for_a_bad_sign_request(make_client, case):
    make_key_id, overrides, expected = ERROR_CASES[case]
    key_id = make_key_id()
    args = {"message": b"m", "algorithm": "RSA_PKCS1_SHA_256", "message_type": "RAW", **overrides}

    with pytest.raises(expected) as raised:
        make_client().sign(key_id=key_id, **args)

    assert type(raised.value) is expected
    assert raised.value.code == expected.code


@pytest.mark.parametrize("case", list(ERROR_CASES), ids=list(ERROR_CASES))
def test_both_backends_raise_the_same_error_with_the_same_message(http_client, case):
    make_key_id, overrides, _ = ERROR_CASES[case]
    key_id = make_key_id()
    args = {"message": b"m", "algorithm": "RSA_PKCS1_SHA_256", "message_type": "RAW", **overrides}
    raised = []
    for client in (LocalKmsClient(), http_client()):
        with pytest.raises(DomainError) as caught:
            client.verify(key_id=key_id, signature=b"s", **args)
        raised.append(caught.value)

    local, remote = raised
    assert type(remote) is type(local)
    assert (remote.code, remote.message) == (local.code, local.message)
    assert getattr(remote, "fields", None) == getattr(local, "fields", None)


@pytest.mark.parametrize("operation", ["describe_key", "get_public_key"])
def test_it_raises_key_not_found_when_reading_an_unknown_key(make_client, operation):
    with pytest.raises(errors.KeyNotFound):
        getattr(make_client(), operation)(str(uuid.uuid4()))


def test_it_raises_cmk_disabled_for_the_public_key_of_a_disabled_key(make_client):
    with pytest.raises(errors.CmkDisabled):
        make_client().get_public_key(_disabled())


def test_it_raises_service_not_authorized_telling_what_to_grant(make_client):
    key = make_key("registry")

    with pytest.raises(errors.ServiceNotAuthorized) as raised:
        make_client(service=SERVICE).sign(
            key_id=str(key.key_id), message=b"image", algorithm="RSA_PKCS1_SHA_256"
        )

    assert "/api/v1/kms/service-authorizations/" in raised.value.message
    assert raised.value.details == {"service": SERVICE}


def test_it_raises_invalid_parameter_for_an_unknown_service(make_client):
    key = make_key("registry")

    with pytest.raises(errors.InvalidParameter) as raised:
        make_client(service="mail-relay").sign(
            key_id=str(key.key_id), message=b"image", algorithm="RSA_PKCS1_SHA_256"
        )

    assert list(raised.value.fields) == ["service"]


# --- HTTP only: credentials, network and protocol failures ---------------------------


def test_it_raises_auth_failure_for_a_wrong_token_without_showing_it(live_server, transactional_db):
    key = make_key("guarded")
    wrong = "f" * 40
    client = HttpKmsClient(base_url=live_server.url, token=wrong)

    with pytest.raises(KmsAuthFailure) as raised:
        client.describe_key(str(key.key_id))

    assert raised.value.code == "AuthFailure"
    assert "401" in raised.value.message
    assert live_server.url in raised.value.message
    assert wrong not in raised.value.message
    assert wrong not in repr(client)


def test_it_raises_auth_failure_naming_the_missing_permission(live_server, transactional_db):
    key = make_key("guarded")
    viewer = make_token(make_user(perms=["kms.view_key"]))
    client = HttpKmsClient(base_url=live_server.url, token=viewer)

    with pytest.raises(KmsAuthFailure) as raised:
        client.sign(key_id=str(key.key_id), message=b"m", algorithm="RSA_PKCS1_SHA_256")

    assert "403" in raised.value.message
    assert "kms.use_key" in raised.value.message
    assert viewer not in raised.value.message


def test_it_raises_kms_unavailable_quickly_when_nothing_listens():
    port = free_port()
    client = HttpKmsClient(
        base_url=f"http://user:hunter2@127.0.0.1:{port}", token="secret-token", timeout=2
    )

    started = time.monotonic()
    with pytest.raises(errors.KmsUnavailable) as raised:
        client.describe_key(str(uuid.uuid4()))
    elapsed = time.monotonic() - started

    assert elapsed < 3
    assert raised.value.message.startswith(f"KMS at http://127.0.0.1:{port} unreachable: ")
    assert "refused" in raised.value.message.lower()
    assert "secret-token" not in raised.value.message
    assert "hunter2" not in raised.value.message
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_it_raises_kms_unavailable_after_the_read_timeout_when_the_server_never_answers():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # connections complete in the backlog; nothing ever reads or answers
        port = silent.getsockname()[1]
        client = HttpKmsClient(base_url=f"http://127.0.0.1:{port}", token="t0ken", timeout=0.5)

        started = time.monotonic()
        with pytest.raises(errors.KmsUnavailable) as raised:
            client.sign(key_id=str(uuid.uuid4()), message=b"m", algorithm="RSA_PKCS1_SHA_256")
        elapsed = time.monotonic() - started

    assert 0.4 <= elapsed < 3
    assert f"KMS at http://127.0.0.1:{port} unreachable: no answer after 0.5s" in (
        raised.value.message
    )
    assert "t0ken" not in raised.value.message


class _CannedServer:
    """A real HTTP server on a free loopback port answering every request the same way."""

    def __init__(self, status: int, body: bytes, content_type: str, headers=None) -> None:
        canned = (status, body, content_type, headers or {})
        self.requests: list[tuple[str, str, dict]] = []
        seen = self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                seen.append((self.command, self.path, dict(self.headers)))
                status, body, content_type, extra = canned
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in extra.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> _CannedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize(
    "status, body, content_type, expected",
    [
        (500, b"<h1>Server Error</h1>", "text/html", "HTTP 500: not a KMS error response"),
        (502, b"Bad Gateway", "text/plain", "HTTP 502: not a KMS error response"),
        (404, b"<h1>Not Found</h1>", "text/html", "HTTP 404: not a KMS error response"),
        (200, b"not json", "text/plain", "HTTP 200: not a JSON object"),
        (200, b"[1, 2]", "application/json", "HTTP 200: not a JSON object"),
        (
            418,
            json.dumps({"code": "Teapot", "message": "short and stout"}).encode(),
            "application/json",
            "HTTP 418: unexpected error code 'Teapot' (short and stout)",
        ),
        (302, b"", "text/html", "HTTP 302: not a KMS error response"),
    ],
    ids=["500-html", "502-text", "404-html", "200-text", "200-list", "unknown-code", "redirect"],
)
def test_it_raises_kms_unavailable_for_an_answer_outside_the_protocol(
    status, body, content_type, expected
):
    key_id = str(uuid.uuid4())
    headers = {"Location": "http://127.0.0.1:9/elsewhere"} if status == 302 else None
    with _CannedServer(status, body, content_type, headers) as server:
        client = HttpKmsClient(base_url=server.url, token="tok-123", timeout=2)

        with pytest.raises(errors.KmsUnavailable) as raised:
            client.describe_key(key_id)

    assert raised.value.message == (
        f"KMS at {server.url} answered GET /api/v1/kms/keys/{key_id}/ with {expected}."
    )
    assert len(server.requests) == 1  # no retry, no redirect followed
    method, path, headers_seen = server.requests[0]
    assert (method, path) == ("GET", f"/api/v1/kms/keys/{key_id}/")
    assert headers_seen["Authorization"] == "Token tok-123"
    assert "tok-123" not in raised.value.message


def test_it_maps_a_known_error_code_even_on_a_5xx():
    body = json.dumps({"code": "InternalError.MasterKey", "message": "cannot open"}).encode()
    with _CannedServer(500, body, "application/json") as server:
        client = HttpKmsClient(base_url=server.url, token="t", timeout=2)

        with pytest.raises(errors.MasterKeyError) as raised:
            client.sign(key_id=str(uuid.uuid4()), message=b"m", algorithm="RSA_PKCS1_SHA_256")

    assert raised.value.message == "cannot open"


def test_it_sends_the_canonical_key_id_in_the_path_and_the_service_in_the_body():
    answer = {"key_id": "x", "signature": base64.b64encode(b"sig").decode()}
    with _CannedServer(200, json.dumps(answer).encode(), "application/json") as server:
        client = HttpKmsClient(base_url=server.url + "/", token="t", service=SERVICE, timeout=2)
        key_id = uuid.uuid4()

        signature = client.sign(
            key_id=key_id.hex.upper(), message=b"m", algorithm="RSA_PKCS1_SHA_256"
        )

    assert signature == b"sig"
    method, path, _ = server.requests[0]
    assert (method, path) == ("POST", f"/api/v1/kms/keys/{key_id}/sign/")


def test_it_rejects_a_base_url_that_is_not_an_http_server_root():
    with pytest.raises(ImproperlyConfigured):
        HttpKmsClient(base_url="127.0.0.1:8000", token="t")
    with pytest.raises(ImproperlyConfigured):
        HttpKmsClient(base_url="http://127.0.0.1:8000", token="")


# --- choosing the backend ---------------------------------------------------------


def test_get_kms_client_gives_the_local_backend_by_default(settings):
    settings.KMS_BACKEND = "local"

    client = get_kms_client(service=SERVICE)

    assert isinstance(client, LocalKmsClient)
    assert client.service == SERVICE


def test_get_kms_client_gives_a_working_http_backend_when_configured(settings, live_server, token):
    key = make_key("over-http")
    settings.KMS_BACKEND = "http"
    settings.KMS_HTTP_URL = live_server.url
    settings.KMS_HTTP_TOKEN = token
    settings.KMS_HTTP_TIMEOUT = 3.5

    client = get_kms_client()

    assert isinstance(client, HttpKmsClient)
    assert (client.base_url, client.timeout, client.service) == (live_server.url, 3.5, None)
    assert client.describe_key(str(key.key_id)).alias == "over-http"


@pytest.mark.parametrize(
    "overrides",
    [
        {"KMS_BACKEND": "http", "KMS_HTTP_URL": "", "KMS_HTTP_TOKEN": "t"},
        {"KMS_BACKEND": "http", "KMS_HTTP_URL": "http://127.0.0.1:1", "KMS_HTTP_TOKEN": ""},
        {"KMS_BACKEND": "carrier-pigeon"},
    ],
)
def test_get_kms_client_refuses_an_incomplete_configuration(settings, overrides):
    for name, value in overrides.items():
        setattr(settings, name, value)

    with pytest.raises(ImproperlyConfigured):
        get_kms_client()
