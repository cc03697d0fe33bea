"""RegistryClient against a real docker-registry (Distribution 2.8) on loopback.

Where the real registry cannot produce a behaviour on demand (5xx answers, a
scripted Link header for tags, which 2.8 does not paginate, a basic-auth
challenge without bcrypt), a tiny ``http.server`` on 127.0.0.1 plays the registry.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from registry.client import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, RegistryClient
from registry.errors import (
    InvalidReference,
    RegistryAuthError,
    RegistryError,
    RegistryNotFound,
    RegistryRequestRejected,
    RegistryUnavailable,
)
from registry.reference import (
    ACCEPTED_MANIFEST_TYPES,
    validate_digest,
    validate_repository_name,
    validate_tag,
)
from tests.support.oci import build_image, canonical_json, push_image, push_index
from tests.support.registry_server import RegistryServer, RegistryServerError, free_port
from tests.support.stub_registry import Reply, SeenRequest, StubRegistry, registry_errors
from tests.support.token_server import TokenServer

pytestmark = pytest.mark.registry_server

MISSING_DIGEST = "sha256:" + "0" * 64


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------


class CountingSession(requests.Session):
    """A real session that records every request it sends.

    ``sent`` holds ``(method, path)``; ``authorized`` whether each request carried an
    ``Authorization`` header; ``statuses`` the status of each answer.
    """

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, str]] = []
        self.authorized: list[bool] = []
        self.statuses: list[int] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.sent.append((str(request.method), urlsplit(str(request.url)).path))
        self.authorized.append("Authorization" in request.headers)
        response = super().send(request, **kwargs)
        self.statuses.append(response.status_code)
        return response

    def methods(self) -> list[str]:
        return [method for method, _ in self.sent]


@pytest.fixture
def counting_session() -> Iterator[CountingSession]:
    session = CountingSession()
    yield session
    session.close()


@pytest.fixture
def counting_client(
    registry_server: RegistryServer, counting_session: CountingSession
) -> RegistryClient:
    return RegistryClient(registry_server.url, session=counting_session, backoff=0.01)


# ---------------------------------------------------------------------------------------
# manifests and blobs against the real registry
# ---------------------------------------------------------------------------------------


def test_ping_succeeds_while_the_registry_runs_and_fails_once_it_stops(
    registry_server: RegistryServer,
) -> None:
    client = RegistryClient(registry_server.url, retries=1)
    client.ping()  # raises unless GET /v2/ answers 200

    registry_server.stop()

    with pytest.raises(RegistryUnavailable):
        client.ping()


def test_it_reads_a_pushed_image_back_by_tag_and_by_digest(
    registry_client: RegistryClient,
) -> None:
    digest = push_image(registry_client, "prod/app", "v1", seed="one")
    built = build_image(seed="one")
    assert digest == built.digest

    by_tag = registry_client.get_manifest("prod/app", "v1")
    by_digest = registry_client.get_manifest("prod/app", digest)
    assert by_tag.content == by_digest.content == built.manifest
    assert by_tag.digest == by_digest.digest == digest
    assert digest == "sha256:" + hashlib.sha256(by_tag.content).hexdigest()
    assert by_tag.media_type == OCI_MANIFEST
    assert by_tag.size == len(built.manifest)
    assert by_tag.json["config"]["digest"] == "sha256:" + hashlib.sha256(built.config).hexdigest()

    head_tag = registry_client.head_manifest("prod/app", "v1")
    head_digest = registry_client.head_manifest("prod/app", digest)
    assert head_tag == head_digest
    assert head_tag is not None
    assert (head_tag.digest, head_tag.media_type, head_tag.size) == (
        digest,
        OCI_MANIFEST,
        len(built.manifest),
    )


def test_it_keeps_the_docker_v2_media_type(registry_client: RegistryClient) -> None:
    digest = push_image(registry_client, "prod/legacy", "v1", media_type=DOCKER_MANIFEST)

    manifest = registry_client.get_manifest("prod/legacy", "v1")
    assert manifest.media_type == DOCKER_MANIFEST
    assert manifest.digest == digest


def test_it_pushes_an_index_after_its_children(registry_client: RegistryClient) -> None:
    index_digest, child_digests = push_index(registry_client, "prod/multi", "v2", seed="idx")

    index = registry_client.get_manifest("prod/multi", "v2")
    assert index.digest == index_digest
    assert index.media_type == OCI_INDEX
    assert [m["digest"] for m in index.json["manifests"]] == child_digests
    assert [m["platform"]["architecture"] for m in index.json["manifests"]] == ["amd64", "arm64"]
    assert len(set(child_digests)) == 2
    for child in child_digests:
        assert registry_client.get_manifest("prod/multi", child).media_type == OCI_MANIFEST
    # Children were pushed by digest: the only tag is the index's.
    assert list(registry_client.list_tags("prod/multi")) == ["v2"]


def test_get_of_a_missing_tag_names_registry_operation_and_status(
    registry_server: RegistryServer, registry_client: RegistryClient
) -> None:
    push_image(registry_client, "prod/app", "v1")

    with pytest.raises(RegistryNotFound) as caught:
        registry_client.get_manifest("prod/app", "nope")

    error = caught.value
    assert error.status == 404
    assert error.registry == registry_server.url
    assert error.operation == "GET manifest prod/app:nope"
    assert error.registry_code == "MANIFEST_UNKNOWN"
    assert error.http_status == 404
    assert str(error) == (
        f"registry {registry_server.url}: GET manifest prod/app:nope failed: "
        "404 MANIFEST_UNKNOWN (manifest unknown)"
    )


def test_head_of_a_missing_manifest_returns_none(registry_client: RegistryClient) -> None:
    push_image(registry_client, "prod/app", "v1")

    assert registry_client.head_manifest("prod/app", "v2") is None
    assert registry_client.head_manifest("prod/app", MISSING_DIGEST) is None
    assert registry_client.head_manifest("prod/unknown", "v1") is None


def test_a_manifest_naming_missing_blobs_is_rejected_without_retry(
    counting_client: RegistryClient, counting_session: CountingSession
) -> None:
    image = build_image(seed="orphan")
    counting_session.sent.clear()

    with pytest.raises(RegistryRequestRejected) as caught:
        counting_client.put_manifest("prod/app", "v1", image.manifest, OCI_MANIFEST)

    assert caught.value.status == 400
    assert caught.value.registry_code == "MANIFEST_BLOB_UNKNOWN"
    assert "PUT manifest prod/app:v1 failed: 400 MANIFEST_BLOB_UNKNOWN" in str(caught.value)
    assert counting_session.methods() == ["PUT"]


def test_it_deletes_a_manifest_by_digest(registry_client: RegistryClient) -> None:
    digest = push_image(registry_client, "prod/app", "v1")
    push_image(registry_client, "prod/app", "v2", seed="other")

    registry_client.delete_manifest("prod/app", digest)

    assert registry_client.head_manifest("prod/app", digest) is None
    with pytest.raises(RegistryNotFound):
        registry_client.get_manifest("prod/app", digest)
    with pytest.raises(RegistryNotFound):
        registry_client.get_manifest("prod/app", "v1")
    assert list(registry_client.list_tags("prod/app")) == ["v2"]
    with pytest.raises(RegistryNotFound) as caught:
        registry_client.delete_manifest("prod/app", digest)
    assert caught.value.operation == f"DELETE manifest prod/app@{digest}"


def test_a_put_by_digest_stores_an_untagged_manifest(registry_client: RegistryClient) -> None:
    digest = push_image(registry_client, "prod/app", None, seed="untagged")

    assert digest == build_image(seed="untagged").digest
    assert registry_client.get_manifest("prod/app", digest).digest == digest
    # Distribution reports a repository holding only untagged manifests as NAME_UNKNOWN.
    assert list(registry_client.list_tags("prod/app")) == []


def test_upload_blob_skips_a_blob_that_already_exists(
    counting_client: RegistryClient, counting_session: CountingSession
) -> None:
    data = b"a blob to upload once"

    first = counting_client.upload_blob("prod/app", data)
    assert counting_session.methods() == ["HEAD", "POST", "PUT"]
    counting_session.sent.clear()

    second = counting_client.upload_blob("prod/app", data)

    assert first == second == "sha256:" + hashlib.sha256(data).hexdigest()
    assert counting_session.methods() == ["HEAD"]
    assert counting_client.blob_exists("prod/app", first) is True
    assert counting_client.get_blob("prod/app", first) == data


def test_a_missing_blob_is_reported(registry_client: RegistryClient) -> None:
    push_image(registry_client, "prod/app", "v1")

    assert registry_client.blob_exists("prod/app", MISSING_DIGEST) is False
    with pytest.raises(RegistryNotFound) as caught:
        registry_client.get_blob("prod/app", MISSING_DIGEST)
    assert caught.value.registry_code == "BLOB_UNKNOWN"
    assert caught.value.operation == f"GET blob prod/app@{MISSING_DIGEST}"


# ---------------------------------------------------------------------------------------
# listings
# ---------------------------------------------------------------------------------------


def test_catalog_follows_link_headers_across_pages(
    counting_client: RegistryClient, counting_session: CountingSession
) -> None:
    repositories = ["team/a", "team/b", "team/c", "team/d", "team/e"]
    for repository in repositories:
        push_image(counting_client, repository, "v1")
    counting_session.sent.clear()

    listed = list(counting_client.catalog(page_size=2))

    assert listed == repositories
    catalog_pages = [path for method, path in counting_session.sent if method == "GET"]
    assert catalog_pages == ["/v2/_catalog"] * 3


def test_list_tags_returns_every_tag_with_a_small_page_size(
    registry_client: RegistryClient,
) -> None:
    tags = ["t1", "t2", "t3", "t4", "t5"]
    for tag in tags:
        push_image(registry_client, "prod/app", tag, seed=tag)

    assert sorted(registry_client.list_tags("prod/app", page_size=2)) == tags


def test_list_tags_follows_link_headers() -> None:
    pages = {
        "/v2/prod/app/tags/list?n=2": (["a", "b"], "</v2/prod/app/tags/list?last=b&n=2>"),
        "/v2/prod/app/tags/list?last=b&n=2": (["c", "d"], "</v2/prod/app/tags/list?last=d&n=2>"),
        "/v2/prod/app/tags/list?last=d&n=2": (["e"], None),
    }

    def handler(request: SeenRequest) -> Reply:
        tags, link = pages[request.path]
        headers = {"Content-Type": "application/json"}
        if link:
            headers["Link"] = f'{link}; rel="next"'
        return Reply(200, json.dumps({"name": "prod/app", "tags": tags}).encode(), headers)

    with StubRegistry(handler) as stub:
        client = RegistryClient(stub.url)
        assert list(client.list_tags("prod/app", page_size=2)) == ["a", "b", "c", "d", "e"]
        assert [r.path for r in stub.requests] == list(pages)


def test_a_link_to_another_origin_is_refused() -> None:
    def handler(request: SeenRequest) -> Reply:
        return Reply(
            200,
            b'{"repositories": ["a"]}',
            {"Link": '<http://example.invalid/v2/_catalog?last=a>; rel="next"'},
        )

    with StubRegistry(handler) as stub:
        client = RegistryClient(stub.url)
        pages = client.catalog()
        assert next(pages) == "a"
        with pytest.raises(RegistryError, match="another origin"):
            next(pages)
        assert len(stub.requests) == 1


def test_list_tags_is_empty_once_every_tag_is_deleted(registry_client: RegistryClient) -> None:
    digest = push_image(registry_client, "prod/app", "v1")
    registry_client.delete_manifest("prod/app", digest)

    assert list(registry_client.list_tags("prod/app")) == []


# ---------------------------------------------------------------------------------------
# validation before any request
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "field", "bad"),
    [
        (lambda c: c.get_manifest("Prod/App", "v1"), "repository", "Prod/App"),
        (lambda c: c.head_manifest("prod//app", "v1"), "repository", "prod//app"),
        (lambda c: c.list_tags("-prod/app"), "repository", "-prod/app"),
        (lambda c: c.upload_blob("prod/app/", b"x"), "repository", "prod/app/"),
        (lambda c: c.get_manifest("a" * 256, "v1"), "repository", "a" * 256),
        (lambda c: c.get_manifest("prod/app", ".hidden"), "tag", ".hidden"),
        (lambda c: c.put_manifest("prod/app", "v" * 129, b"{}", OCI_MANIFEST), "tag", "v" * 129),
        (lambda c: c.get_manifest("prod/app", "tag with space"), "tag", "tag with space"),
        (lambda c: c.get_manifest("prod/app", "sha256:ABC"), "digest", "sha256:ABC"),
        (lambda c: c.delete_manifest("prod/app", "v1"), "digest", "v1"),
        (lambda c: c.get_blob("prod/app", "md5:" + "0" * 32), "digest", "md5:" + "0" * 32),
        (lambda c: c.blob_exists("prod/app", "sha256:" + "0" * 63), "digest", "sha256:" + "0" * 63),
    ],
)
def test_invalid_references_are_rejected_before_any_request(
    call: Callable[[RegistryClient], Any], field: str, bad: str
) -> None:
    session = CountingSession()
    # Nothing listens there: any request would fail differently.
    client = RegistryClient(f"http://127.0.0.1:{free_port()}", session=session, retries=1)

    with pytest.raises(InvalidReference) as caught:
        call(client)

    assert session.sent == []
    assert caught.value.http_status == 400
    assert caught.value.field == field
    assert caught.value.value == bad
    assert list(caught.value.fields) == [field]
    assert repr(bad[:60]).rstrip("'") in str(caught.value)


@pytest.mark.parametrize(
    "name", ["a", "prod/app", "a__b", "a--b", "a.b/c_d", "x0/y1/z2", "a" * 255]
)
def test_valid_repository_names_are_accepted(name: str) -> None:
    assert validate_repository_name(name) == name


@pytest.mark.parametrize("name", ["", "A", "a_", "_a", "a..b", "a/", "/a", "a:b", "a___b"])
def test_invalid_repository_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidReference):
        validate_repository_name(name)


def test_tag_and_digest_validators() -> None:
    assert validate_tag("v1.2.3-rc_1") == "v1.2.3-rc_1"
    assert validate_tag("_x") == "_x"
    assert validate_tag("sha256-" + "a" * 64 + ".sig")
    with pytest.raises(InvalidReference):
        validate_tag("-x")
    with pytest.raises(InvalidReference):
        validate_tag("vé")
    assert validate_digest("sha256:" + "ab" * 32)
    with pytest.raises(InvalidReference):
        validate_digest("sha512:" + "ab" * 64)


# ---------------------------------------------------------------------------------------
# retries
# ---------------------------------------------------------------------------------------


def test_an_unreachable_registry_raises_unavailable_after_the_retries() -> None:
    session = CountingSession()
    url = f"http://127.0.0.1:{free_port()}"
    client = RegistryClient(url, session=session, retries=3, backoff=0.05, timeout=1)

    started = time.monotonic()
    with pytest.raises(RegistryUnavailable) as caught:
        client.ping()
    elapsed = time.monotonic() - started

    assert len(session.sent) == 3
    assert 0.15 <= elapsed < 5  # backoff 0.05 + 0.1, nothing else to wait for
    assert caught.value.http_status == 503
    assert caught.value.status is None
    assert str(caught.value) == (
        f"registry {url}: GET /v2/ failed: could not connect (ConnectionError) after 3 attempts"
    )


def test_it_retries_server_errors_until_success(caplog: pytest.LogCaptureFixture) -> None:
    answers = iter([Reply(503), Reply(503), Reply(200, b"{}")])

    with StubRegistry(lambda request: next(answers)) as stub:
        client = RegistryClient(
            stub.url, retries=3, backoff=0.01, username="alice", password="alice-secret"
        )
        with caplog.at_level("WARNING", logger="registry.client"):
            client.ping()

        assert [r.path for r in stub.requests] == ["/v2/"] * 3
    assert [r.getMessage() for r in caplog.records] == [
        f"registry {stub.url}: GET /v2/ attempt 1/3 failed: 503 Service Unavailable; "
        "retrying in 0.01s",
        f"registry {stub.url}: GET /v2/ attempt 2/3 failed: 503 Service Unavailable; "
        "retrying in 0.02s",
    ]
    assert "alice-secret" not in caplog.text


def test_persistent_server_errors_raise_unavailable_with_the_status() -> None:
    def handler(request: SeenRequest) -> Reply:
        return Reply(500, registry_errors("UNKNOWN", "unknown error"))

    with StubRegistry(handler) as stub:
        client = RegistryClient(stub.url, retries=2, backoff=0.01, name="stub")
        with pytest.raises(RegistryUnavailable) as caught:
            client.get_manifest("prod/app", "v1")

        assert len(stub.requests) == 2
    assert caught.value.http_status == 502
    assert caught.value.status == 500
    assert str(caught.value) == (
        "registry stub: GET manifest prod/app:v1 failed: 500 UNKNOWN (unknown error) "
        "after 2 attempts"
    )


def test_a_client_error_is_not_retried() -> None:
    def handler(request: SeenRequest) -> Reply:
        return Reply(400, registry_errors("MANIFEST_INVALID", "manifest invalid"))

    with StubRegistry(handler) as stub:
        client = RegistryClient(stub.url, retries=5, backoff=0.01)
        with pytest.raises(RegistryRequestRejected) as caught:
            client.put_manifest("prod/app", "v1", b"{}", OCI_MANIFEST)

        assert len(stub.requests) == 1
    assert caught.value.registry_code == "MANIFEST_INVALID"
    assert str(caught.value) == (
        f"registry {stub.url}: PUT manifest prod/app:v1 failed: 400 MANIFEST_INVALID "
        "(manifest invalid)"
    )


def test_a_manifest_whose_bytes_do_not_match_the_digest_is_refused() -> None:
    body = b'{"schemaVersion": 2}'

    def handler(request: SeenRequest) -> Reply:
        return Reply(200, body, {"Content-Type": OCI_MANIFEST})

    with StubRegistry(handler) as stub:
        client = RegistryClient(stub.url)
        with pytest.raises(RegistryError, match="digest mismatch"):
            client.get_manifest("prod/app", MISSING_DIGEST)
        # By tag the digest is computed from the same bytes.
        manifest = client.get_manifest("prod/app", "v1")
        assert manifest.digest == "sha256:" + hashlib.sha256(body).hexdigest()
        assert stub.requests[0].headers["Accept"] == ", ".join(ACCEPTED_MANIFEST_TYPES)


def test_head_without_a_digest_header_reads_the_manifest() -> None:
    body = b'{"schemaVersion": 2, "mediaType": "%s"}' % OCI_MANIFEST.encode()

    def handler(request: SeenRequest) -> Reply:
        return Reply(200, body, {"Content-Type": OCI_MANIFEST})

    with StubRegistry(handler) as stub:
        ref = RegistryClient(stub.url).head_manifest("prod/app", "v1")

        assert [r.method for r in stub.requests] == ["HEAD", "GET"]
    assert ref is not None
    assert ref.digest == "sha256:" + hashlib.sha256(body).hexdigest()
    assert (ref.media_type, ref.size) == (OCI_MANIFEST, len(body))


# ---------------------------------------------------------------------------------------
# basic auth
# ---------------------------------------------------------------------------------------

# htpasswd line for user "signet", password "registry-test-password" (bcrypt, cost 5),
# precomputed so the tests need no bcrypt library.
HTPASSWD_USER = "signet"
HTPASSWD_PASSWORD = "registry-test-password"
HTPASSWD_LINE = "signet:$2y$05$SignetTestSaltForHtpaetZ/Rqsmvo1GKJWAbM0X9PaHTCAz61JG"


@pytest.fixture
def htpasswd_registry(registry_server_factory, tmp_path) -> RegistryServer:
    path = tmp_path / "htpasswd"
    path.write_text(HTPASSWD_LINE + "\n")
    return registry_server_factory(auth={"htpasswd": {"realm": "signet-test", "path": str(path)}})


def test_basic_auth_pushes_and_pulls_on_an_htpasswd_registry(
    htpasswd_registry: RegistryServer,
) -> None:
    session = CountingSession()
    client = RegistryClient(
        htpasswd_registry.url, username=HTPASSWD_USER, password=HTPASSWD_PASSWORD, session=session
    )

    digest = push_image(client, "prod/app", "v1")

    assert client.get_manifest("prod/app", "v1").digest == digest
    # One challenge at the start, then the credentials go along with every request.
    assert session.statuses.count(401) == 1
    assert session.authorized == [False] + [True] * (len(session.sent) - 1)


def test_an_htpasswd_registry_refuses_anonymous_and_wrong_credentials(
    htpasswd_registry: RegistryServer,
) -> None:
    anonymous = RegistryClient(htpasswd_registry.url)
    with pytest.raises(RegistryAuthError) as caught:
        anonymous.ping()
    assert caught.value.status == 401

    wrong = RegistryClient(htpasswd_registry.url, username=HTPASSWD_USER, password="wrong-pw")
    with pytest.raises(RegistryAuthError) as caught:
        wrong.get_manifest("prod/app", "v1")
    assert caught.value.status == 401
    assert caught.value.operation == "GET manifest prod/app:v1"
    assert "wrong-pw" not in str(caught.value)
    assert "wrong-pw" not in json.dumps(caught.value.as_dict())


def test_basic_credentials_answer_a_basic_challenge_and_are_then_sent_upfront() -> None:
    expected = "Basic " + base64.b64encode(b"alice:pw").decode()

    def handler(request: SeenRequest) -> Reply:
        if request.headers.get("Authorization") != expected:
            return Reply(401, b"{}", {"WWW-Authenticate": 'Basic realm="stub"'})
        return Reply(200, b"{}")

    with StubRegistry(handler) as stub:
        with pytest.raises(RegistryAuthError):
            RegistryClient(stub.url).ping()
        assert len(stub.requests) == 1
        stub.requests.clear()

        client = RegistryClient(stub.url, username="alice", password="pw")
        client.ping()
        client.ping()

        auth = [r.headers.get("Authorization") for r in stub.requests]
        assert auth == [None, expected, expected]


def test_a_static_bearer_token_is_sent_with_every_request() -> None:
    def handler(request: SeenRequest) -> Reply:
        if request.headers.get("Authorization") != "Bearer static-token-value":
            return Reply(401, b"{}", {"WWW-Authenticate": 'Bearer realm="http://127.0.0.1:9/t"'})
        return Reply(200, b"{}")

    with StubRegistry(handler) as stub:
        RegistryClient(stub.url, token="static-token-value").ping()
        assert len(stub.requests) == 1

        with pytest.raises(RegistryAuthError) as caught:
            RegistryClient(stub.url, token="other-token-value").ping()
        assert len(stub.requests) == 2  # no token flow with a static token
        assert "other-token-value" not in str(caught.value)


# ---------------------------------------------------------------------------------------
# Docker token auth against a real registry
# ---------------------------------------------------------------------------------------

TOKEN_USERS = {"alice": "alice-password", "reader": "reader-password"}


@pytest.fixture
def token_server(tmp_path) -> Iterator[TokenServer]:
    with TokenServer(
        workdir=tmp_path / "token", users=TOKEN_USERS, permissions={"reader": {"pull"}}
    ) as server:
        yield server


@pytest.fixture
def token_registry(registry_server_factory, token_server: TokenServer) -> RegistryServer:
    return registry_server_factory(auth=token_server.registry_auth_config())


def test_an_anonymous_client_is_refused_by_a_token_registry(
    token_registry: RegistryServer, token_server: TokenServer
) -> None:
    client = RegistryClient(token_registry.url, allowed_realm_origins=[token_server.origin])

    with pytest.raises(RegistryAuthError) as caught:
        client.get_manifest("prod/app", "v1")

    assert caught.value.operation == "GET manifest prod/app:v1"
    assert "token endpoint refused the request: 401" in str(caught.value)
    assert [(r.user, r.scopes) for r in token_server.requests] == [
        (None, ["repository:prod/app:pull"])
    ]


def test_the_token_flow_pushes_and_pulls(
    token_registry: RegistryServer, token_server: TokenServer
) -> None:
    session = CountingSession()
    client = RegistryClient(
        token_registry.url,
        username="alice",
        password="alice-password",
        session=session,
        allowed_realm_origins=[token_server.origin],
    )

    digest = push_image(client, "prod/app", "v1")
    manifest = client.get_manifest("prod/app", "v1")
    tags = list(client.list_tags("prod/app"))
    catalog = list(client.catalog())

    assert manifest.digest == digest
    assert tags == ["v1"]
    assert catalog == ["prod/app"]
    assert token_server.scopes_seen() == [
        "repository:prod/app:pull",
        "repository:prod/app:pull,push",
        "registry:catalog:*",
    ]
    assert {(r.user, r.account, r.service) for r in token_server.requests} == {
        ("alice", "alice", "signet-test")
    }
    # The registry challenged once per new scope; cached tokens went upfront afterwards.
    assert session.statuses.count(401) == 3
    assert [path for _, path in session.sent].count("/token") == 3


def test_a_cached_token_is_reused_for_the_same_scope(
    token_registry: RegistryServer, token_server: TokenServer
) -> None:
    client = RegistryClient(
        token_registry.url,
        allowed_realm_origins=[token_server.origin],
        username="alice",
        password="alice-password",
    )
    push_image(client, "prod/app", "v1")
    token_server.requests.clear()

    client.get_manifest("prod/app", "v1")
    client.head_manifest("prod/app", "v1")
    assert token_server.requests == []  # the pull,push token covers pulls

    with pytest.raises(RegistryNotFound):
        client.get_manifest("prod/other", "v1")
    with pytest.raises(RegistryNotFound):
        client.get_manifest("prod/other", "v2")
    assert token_server.scopes_seen() == ["repository:prod/other:pull"]


def test_an_expired_token_is_fetched_again(registry_server_factory, tmp_path) -> None:
    with TokenServer(workdir=tmp_path, users=TOKEN_USERS, expires_in=2) as tokens:
        registry = registry_server_factory(auth=tokens.registry_auth_config())
        client = RegistryClient(
            registry.url,
            username="alice",
            password="alice-password",
            allowed_realm_origins=[tokens.origin],
        )

        assert client.head_manifest("prod/app", "v1") is None
        assert client.head_manifest("prod/app", "v1") is None
        assert len(tokens.requests) == 1
        time.sleep(1.6)  # the client drops a token a quarter of its lifetime (0.5 s) early
        assert client.head_manifest("prod/app", "v1") is None
        assert len(tokens.requests) == 2


def test_a_token_without_push_access_cannot_push(
    token_registry: RegistryServer, token_server: TokenServer
) -> None:
    writer = RegistryClient(
        token_registry.url,
        allowed_realm_origins=[token_server.origin],
        username="alice",
        password="alice-password",
    )
    digest = push_image(writer, "prod/app", "v1")
    reader = RegistryClient(
        token_registry.url,
        allowed_realm_origins=[token_server.origin],
        username="reader",
        password="reader-password",
    )

    assert reader.get_manifest("prod/app", "v1").digest == digest
    with pytest.raises(RegistryAuthError) as caught:
        push_image(reader, "prod/app", "v2", seed="reader")

    assert caught.value.status == 401
    assert caught.value.operation == "POST blob upload prod/app"
    assert "reader-password" not in str(caught.value)
    assert writer.head_manifest("prod/app", "v2") is None


def test_wrong_token_credentials_raise_an_auth_error(
    token_registry: RegistryServer, token_server: TokenServer
) -> None:
    client = RegistryClient(
        token_registry.url,
        allowed_realm_origins=[token_server.origin],
        username="alice",
        password="not-her-password",
    )

    with pytest.raises(RegistryAuthError) as caught:
        client.ping()

    assert "not-her-password" not in str(caught.value)
    assert [r.user for r in token_server.requests] == [None]


def test_a_static_token_issued_by_the_realm_works_on_the_real_registry(
    token_registry: RegistryServer, token_server: TokenServer
) -> None:
    token = token_server.issue(
        subject="ci",
        access=[{"type": "repository", "name": "prod/app", "actions": ["pull", "push"]}],
    )
    client = RegistryClient(
        token_registry.url, allowed_realm_origins=[token_server.origin], token=token
    )

    digest = push_image(client, "prod/app", "v1", seed="static")

    assert client.get_manifest("prod/app", digest).digest == digest
    assert token_server.requests == []
    with pytest.raises(RegistryAuthError):
        client.get_manifest("prod/elsewhere", "v1")


def test_the_real_registry_starts_quickly(registry_server_factory) -> None:
    server = registry_server_factory()

    assert server.startup_seconds is not None
    assert server.startup_seconds < 3
    url = server.url
    assert requests.get(f"{url}/v2/", timeout=2).status_code == 200
    server.stop()
    assert not server.running
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/v2/", timeout=1)


def test_manifest_list_indexes_are_accepted(registry_client: RegistryClient) -> None:
    index_digest, children = push_index(
        registry_client,
        "prod/multi",
        "v1",
        media_type="application/vnd.docker.distribution.manifest.list.v2+json",
        platforms=(("linux", "amd64"),),
    )

    manifest = registry_client.get_manifest("prod/multi", index_digest)
    assert manifest.media_type == "application/vnd.docker.distribution.manifest.list.v2+json"
    assert registry_client.get_manifest("prod/multi", children[0]).media_type == DOCKER_MANIFEST
    assert canonical_json(manifest.json) == manifest.content


# ---------------------------------------------------------------------------------------
# the registry fixture itself
# ---------------------------------------------------------------------------------------


def test_a_registry_with_notifications_posts_push_events_with_the_bearer_token(
    registry_server_factory,
) -> None:
    with StubRegistry(lambda request: Reply(200)) as receiver:
        registry = registry_server_factory(
            notify_url=f"{receiver.url}/hooks/registry", notify_token="hook-token"
        )
        client = RegistryClient(registry.url)
        digest = push_image(client, "prod/app", "v1")

        deadline = time.monotonic() + 10
        while not receiver.requests and time.monotonic() < deadline:
            time.sleep(0.02)

        events = [
            event for request in receiver.requests for event in json.loads(request.body)["events"]
        ]
        request = receiver.requests[0]
    assert request.method == "POST"
    assert request.path == "/hooks/registry"
    assert request.headers["Authorization"] == "Bearer hook-token"
    assert request.headers["Content-Type"].startswith(
        "application/vnd.docker.distribution.events.v1+json"
    )
    # Blob pushes (octet-stream) and pulls are ignored by the endpoint config.
    assert [(e["action"], e["target"]["mediaType"]) for e in events] == [("push", OCI_MANIFEST)]
    assert events[0]["target"]["repository"] == "prod/app"
    assert events[0]["target"]["tag"] == "v1"
    assert events[0]["target"]["digest"] == digest


def test_a_registry_that_cannot_start_reports_its_log(tmp_path) -> None:
    server = RegistryServer(workdir=tmp_path, extra_config={"storage": {"nosuchdriver": {}}})

    with pytest.raises(RegistryServerError) as caught:
        server.start()

    assert "docker-registry exited while starting" in str(caught.value)
    assert "nosuchdriver" in str(caught.value)
    assert not server.running
