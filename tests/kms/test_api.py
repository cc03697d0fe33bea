"""The KMS REST API under /api/v1/kms/: permissions, validation, signing, states."""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from django.utils import timezone
from rest_framework.test import APIClient

from kms import services
from kms.models import Key, KeyState, KeyUsage, ServiceAuthorization
from kms.services import operations
from tests.factories import make_key, make_token, make_user
from tests.kms.conftest import KMS_PERMISSIONS, db_snapshot, token_client

pytestmark = pytest.mark.django_db

BASE = "/api/v1/kms"
RSA = KeyUsage.RSA_2048.value
ECC = KeyUsage.ECC.value
SERVICE = "registry-signing"
KEY_FIELDS = {
    "key_id",
    "alias",
    "description",
    "region",
    "key_usage",
    "key_spec",
    "origin",
    "key_state",
    "deletion_date",
    "public_key_fingerprint",
    "created_at",
    "updated_at",
}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def key_url(key: Key | str, suffix: str = "") -> str:
    key_id = key.key_id if isinstance(key, Key) else key
    return f"{BASE}/keys/{key_id}/{suffix + '/' if suffix else ''}"


def state_of(key: Key) -> str:
    return Key.objects.get(pk=key.pk).state


def disabled_key(**kwargs) -> Key:
    key = make_key(**kwargs)
    return services.disable_key(key_id=str(key.key_id))


def pending_key(**kwargs) -> Key:
    key = disabled_key(**kwargs)
    return services.schedule_key_deletion(key_id=str(key.key_id), pending_window_in_days=7)


def call(client: APIClient, method: str, url: str, payload: dict | None = None):
    return getattr(client, method.lower())(url, payload, format="json")


# --- the permission matrix ------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    perm: str
    ok_status: int
    writes: bool
    # Builds the rows the call needs; returns (url, payload, check) where check(response)
    # asserts what a permitted call must have done.
    prepare: Callable[[], tuple[str, dict | None, Callable[[Any], None]]]


def _list():
    key = make_key("listed")

    def check(response):
        assert [row["key_id"] for row in response.data["results"]] == [str(key.key_id)]

    return f"{BASE}/keys/", None, check


def _create():
    def check(response):
        key = Key.objects.get(alias="created-by-api")
        assert response.data["key_id"] == str(key.key_id)

    return f"{BASE}/keys/", {"alias": "created-by-api"}, check


def _retrieve():
    key = make_key("described")

    def check(response):
        assert response.data["alias"] == "described"

    return key_url(key), None, check


def _patch():
    key = make_key("patched", description="before")

    def check(response):
        assert Key.objects.get(pk=key.pk).description == "after"

    return key_url(key), {"description": "after"}, check


def _public_key():
    key = make_key("public")

    def check(response):
        assert response.data["public_key_pem"] == key.public_key_pem

    return key_url(key, "public-key"), None, check


def _sign():
    key = make_key("signer")

    def check(response):
        assert operations.verify(
            key_id=str(key.key_id),
            message=b"hello",
            algorithm="RSA_PKCS1_SHA_256",
            signature=base64.b64decode(response.data["signature"]),
        )

    payload = {"message": b64(b"hello"), "algorithm": "RSA_PKCS1_SHA_256"}
    return key_url(key, "sign"), payload, check


def _verify():
    key = make_key("verifier")
    signature = operations.sign(key_id=str(key.key_id), message=b"hi", algorithm="RSA_PSS_SHA_256")

    def check(response):
        assert response.data == {"signature_valid": True}

    payload = {"message": b64(b"hi"), "signature": b64(signature), "algorithm": "RSA_PSS_SHA_256"}
    return key_url(key, "verify"), payload, check


def _enable():
    key = disabled_key(alias="to-enable")

    def check(response):
        assert state_of(key) == KeyState.ENABLED == response.data["key_state"]

    return key_url(key, "enable"), None, check


def _disable():
    key = make_key("to-disable")

    def check(response):
        assert state_of(key) == KeyState.DISABLED == response.data["key_state"]

    return key_url(key, "disable"), None, check


def _schedule_deletion():
    key = disabled_key(alias="to-delete")

    def check(response):
        assert state_of(key) == KeyState.PENDING_DELETE == response.data["key_state"]

    return key_url(key, "schedule-deletion"), {"pending_window_in_days": 7}, check


def _cancel_deletion():
    key = pending_key(alias="to-keep")

    def check(response):
        assert state_of(key) == KeyState.DISABLED == response.data["key_state"]

    return key_url(key, "cancel-deletion"), None, check


def _authorizations():
    grant = services.grant_service_authorization(service=SERVICE)

    def check(response):
        assert [row["id"] for row in response.data["results"]] == [grant.pk]

    return f"{BASE}/service-authorizations/", None, check


def _grant():
    def check(response):
        assert services.is_service_authorized(SERVICE)

    return f"{BASE}/service-authorizations/", {"service": SERVICE}, check


def _revoke():
    services.grant_service_authorization(service=SERVICE)

    def check(response):
        assert not services.is_service_authorized(SERVICE)

    return f"{BASE}/service-authorizations/revoke/", {"service": SERVICE}, check


ENDPOINTS = [
    Endpoint("list-keys", "GET", "kms.view_key", 200, False, _list),
    Endpoint("create-key", "POST", "kms.add_key", 201, True, _create),
    Endpoint("retrieve-key", "GET", "kms.view_key", 200, False, _retrieve),
    Endpoint("patch-key", "PATCH", "kms.change_key", 200, True, _patch),
    Endpoint("public-key", "GET", "kms.view_key", 200, False, _public_key),
    Endpoint("sign", "POST", "kms.use_key", 200, False, _sign),
    Endpoint("verify", "POST", "kms.use_key", 200, False, _verify),
    Endpoint("enable", "POST", "kms.manage_key_state", 200, True, _enable),
    Endpoint("disable", "POST", "kms.manage_key_state", 200, True, _disable),
    Endpoint("schedule-deletion", "POST", "kms.manage_key_state", 200, True, _schedule_deletion),
    Endpoint("cancel-deletion", "POST", "kms.manage_key_state", 200, True, _cancel_deletion),
    Endpoint(
        "list-authorizations",
        "GET",
        "kms.view_serviceauthorization",
        200,
        False,
        _authorizations,
    ),
    Endpoint("grant", "POST", "kms.add_serviceauthorization", 201, True, _grant),
    Endpoint("revoke", "POST", "kms.change_serviceauthorization", 200, True, _revoke),
]
by_name = pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[e.name for e in ENDPOINTS])


@by_name
def test_it_answers_401_to_anonymous_requests_and_changes_nothing(endpoint: Endpoint):
    url, payload, _ = endpoint.prepare()
    before = db_snapshot()

    response = call(APIClient(), endpoint.method, url, payload)

    assert response.status_code == 401
    assert response.data["code"] == "AuthFailure"
    assert db_snapshot() == before


@by_name
def test_it_answers_401_to_an_unknown_token_and_changes_nothing(endpoint: Endpoint):
    url, payload, _ = endpoint.prepare()
    before = db_snapshot()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)

    response = call(client, endpoint.method, url, payload)

    assert response.status_code == 401
    assert db_snapshot() == before


@by_name
@pytest.mark.parametrize("is_staff", [False, True], ids=["plain", "staff"])
def test_it_refuses_a_user_lacking_the_actions_own_permission(endpoint: Endpoint, is_staff):
    # Every other KMS permission, and staff status, must not stand in for the right one.
    others = [perm for perm in KMS_PERMISSIONS if perm != endpoint.perm]
    client = token_client(make_user(perms=others, is_staff=is_staff))
    url, payload, _ = endpoint.prepare()
    before = db_snapshot()

    response = call(client, endpoint.method, url, payload)

    assert response.status_code == 403
    assert response.data["code"] == "UnauthorizedOperation"
    assert endpoint.perm in response.data["message"]
    assert db_snapshot() == before


@by_name
def test_it_allows_a_user_with_exactly_the_actions_permission(endpoint: Endpoint):
    client = token_client(make_user(perms=[endpoint.perm]))
    url, payload, check = endpoint.prepare()
    before = db_snapshot()

    response = call(client, endpoint.method, url, payload)

    assert response.status_code == endpoint.ok_status, response.data
    check(response)
    assert (db_snapshot() != before) is endpoint.writes


@by_name
def test_it_allows_a_superuser_without_explicit_permissions(endpoint: Endpoint, superuser_client):
    url, payload, check = endpoint.prepare()

    response = call(superuser_client, endpoint.method, url, payload)

    assert response.status_code == endpoint.ok_status, response.data
    check(response)


def test_it_accepts_session_authentication():
    client = APIClient()
    client.force_login(make_user(perms=["kms.view_key"]))
    key = make_key("via-session")

    response = client.get(key_url(key))

    assert response.status_code == 200
    assert response.data["key_id"] == str(key.key_id)


def test_it_accepts_an_api_token():
    user = make_user(perms=["kms.view_key"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {make_token(user)}")

    response = client.get(f"{BASE}/keys/")

    assert response.status_code == 200
    assert response.data["count"] == 0


def test_it_answers_405_for_a_method_the_endpoint_does_not_offer(client_with):
    key = make_key("no-put")
    before = db_snapshot()

    response = client_with(*KMS_PERMISSIONS).put(key_url(key), {"description": "x"}, format="json")

    assert response.status_code == 405
    assert db_snapshot() == before


# --- creating keys -----------------------------------------------------------------


def test_it_creates_an_rsa_key_in_the_default_region_by_default():
    user = make_user(perms=["kms.add_key"])

    response = token_client(user).post(
        f"{BASE}/keys/", {"alias": "release", "description": "Signs releases"}, format="json"
    )

    assert response.status_code == 201
    assert set(response.data) == KEY_FIELDS
    key = Key.objects.get(alias="release")
    assert response.data["key_id"] == str(key.key_id)
    assert (key.region, key.key_usage, key.key_spec) == ("ap-guangzhou", RSA, "RSA_2048")
    assert response.data["key_state"] == KeyState.ENABLED == key.state
    assert response.data["public_key_fingerprint"] == key.public_key_fingerprint
    assert key.description == "Signs releases"
    assert key.created_by == user


def test_it_uses_the_default_region_for_a_null_region(client_with, settings):
    settings.KMS_DEFAULT_REGION = "ap-chengdu"

    response = client_with("kms.add_key").post(
        f"{BASE}/keys/", {"alias": "nulled", "region": None}, format="json"
    )

    assert response.status_code == 201
    assert response.data["region"] == "ap-chengdu" == Key.objects.get(alias="nulled").region


def test_it_creates_an_ecc_key_in_the_region_asked_for(client_with):
    response = client_with("kms.add_key").post(
        f"{BASE}/keys/",
        {"alias": "ecc_1", "region": "ap-shanghai", "key_usage": ECC},
        format="json",
    )

    assert response.status_code == 201
    key = Key.objects.get(alias="ecc_1")
    assert (key.region, key.key_usage, key.key_spec) == ("ap-shanghai", ECC, "ECC_NIST_P256")


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"alias": "bad alias!"}, "alias"),
        ({"alias": "-starts-with-dash"}, "alias"),
        ({"alias": "x" * 61}, "alias"),
        ({"alias": ""}, "alias"),
        ({}, "alias"),
        ({"alias": "kms-reserved"}, "alias"),
        ({"alias": "KMS-Reserved"}, "alias"),
        ({"alias": "ok", "description": "é" * 513}, "description"),
        ({"alias": "ok", "region": "mars-north-1"}, "region"),
        ({"alias": "ok", "region": ""}, "region"),
        ({"alias": "ok", "key_usage": "ENCRYPT_DECRYPT"}, "key_usage"),
        ({"alias": 7}, "alias"),
    ],
    ids=[
        "bad-characters",
        "leading-dash",
        "too-long",
        "blank",
        "missing",
        "reserved-prefix",
        "reserved-prefix-any-case",
        "description-over-1024-bytes",
        "unknown-region",
        "blank-region",
        "unknown-usage",
        "not-a-string",
    ],
)
def test_it_rejects_invalid_key_fields_with_a_field_error(client_with, payload, field):
    response = client_with("kms.add_key").post(f"{BASE}/keys/", payload, format="json")

    assert response.status_code == 400, response.data
    assert response.data["code"] in {"InvalidParameterValue", "InvalidParameter"}
    assert list(response.data["fields"]) == [field]
    assert Key.objects.count() == 0


def test_it_accepts_a_description_of_exactly_1024_bytes(client_with):
    response = client_with("kms.add_key").post(
        f"{BASE}/keys/", {"alias": "edge", "description": "é" * 512}, format="json"
    )

    assert response.status_code == 201
    assert Key.objects.get(alias="edge").description == "é" * 512


def test_it_answers_409_for_a_duplicate_alias(client_with):
    make_key("taken")

    response = client_with("kms.add_key").post(f"{BASE}/keys/", {"alias": "taken"}, format="json")

    assert response.status_code == 409
    assert response.data["code"] == "InvalidParameterValue.AliasAlreadyExists"
    assert Key.objects.filter(alias="taken").count() == 1


def test_it_answers_400_for_a_body_that_is_not_json(client_with):
    response = client_with("kms.add_key").post(
        f"{BASE}/keys/", "{not json", content_type="application/json"
    )

    assert response.status_code == 400
    assert response.data["code"] == "InvalidParameter"
    assert Key.objects.count() == 0


# --- reading keys -----------------------------------------------------------------


def test_it_lists_keys_filtered_and_paginated(client_with):
    rsa_a = make_key("team-a-rsa")
    ecc_a = make_key("team-a-ecc", key_usage=ECC, region="ap-beijing")
    make_key("other")
    disabled = disabled_key(alias="team-a-off")
    client = client_with("kms.view_key")

    by_usage = client.get(f"{BASE}/keys/", {"key_usage": ECC})
    by_state = client.get(f"{BASE}/keys/", {"key_state": "Disabled"})
    by_region = client.get(f"{BASE}/keys/", {"region": "ap-beijing"})
    by_alias = client.get(f"{BASE}/keys/", {"search_alias": "TEAM-A", "limit": 2})
    second_page = client.get(f"{BASE}/keys/", {"search_alias": "team-a", "limit": 2, "offset": 2})

    assert [r["key_id"] for r in by_usage.data["results"]] == [str(ecc_a.key_id)]
    assert [r["key_id"] for r in by_state.data["results"]] == [str(disabled.key_id)]
    assert [r["key_id"] for r in by_region.data["results"]] == [str(ecc_a.key_id)]
    assert by_alias.data["count"] == 3
    assert len(by_alias.data["results"]) == 2
    assert by_alias.data["next"] is not None
    seen = {r["key_id"] for r in by_alias.data["results"] + second_page.data["results"]}
    assert seen == {str(rsa_a.key_id), str(ecc_a.key_id), str(disabled.key_id)}
    assert all(set(row) == KEY_FIELDS for row in by_alias.data["results"])


@pytest.mark.parametrize(
    "params, field",
    [({"key_usage": "SYMMETRIC"}, "key_usage"), ({"key_state": "Gone"}, "key_state")],
)
def test_it_rejects_an_unknown_list_filter_value_with_a_field_error(client_with, params, field):
    make_key("present")

    response = client_with("kms.view_key").get(f"{BASE}/keys/", params)

    assert response.status_code == 400
    assert response.data["code"] == "InvalidParameterValue"
    assert list(response.data["fields"]) == [field]


def test_it_describes_a_key(client_with):
    key = make_key("described", description="for the docs")

    response = client_with("kms.view_key").get(key_url(key))

    assert response.status_code == 200
    assert set(response.data) == KEY_FIELDS
    assert response.data["description"] == "for the docs"
    assert response.data["origin"] == "TENCENT_KMS"
    assert response.data["deletion_date"] is None


@pytest.mark.parametrize(
    "suffix, method, payload",
    [
        ("", "GET", None),
        ("", "PATCH", {"description": "x"}),
        ("public-key", "GET", None),
        ("sign", "POST", {"message": b64(b"m"), "algorithm": "RSA_PKCS1_SHA_256"}),
        (
            "verify",
            "POST",
            {"message": b64(b"m"), "signature": b64(b"s"), "algorithm": "RSA_PKCS1_SHA_256"},
        ),
        ("enable", "POST", None),
        ("disable", "POST", None),
        ("schedule-deletion", "POST", {"pending_window_in_days": 7}),
        ("cancel-deletion", "POST", None),
    ],
)
@pytest.mark.parametrize(
    "key_id", [str(uuid.uuid4()), "not-a-uuid", "1234.5"], ids=["unknown", "not-a-uuid", "1234.5"]
)
def test_it_answers_404_cmk_not_found_for_an_unknown_or_malformed_key_id(
    superuser_client, suffix, method, payload, key_id
):
    make_key("unrelated")
    before = db_snapshot()

    response = call(superuser_client, method, key_url(key_id, suffix), payload)

    assert response.status_code == 404
    assert response.data["code"] == "ResourceUnavailable.CmkNotFound"
    assert db_snapshot() == before


def test_it_changes_only_the_description_with_patch(client_with):
    key = make_key("patchable", description="old")

    response = client_with("kms.change_key").patch(
        key_url(key), {"description": "new words"}, format="json"
    )

    assert response.status_code == 200
    assert response.data["description"] == "new words"
    assert Key.objects.get(pk=key.pk).description == "new words"


def test_it_refuses_to_patch_anything_but_the_description(client_with):
    key = make_key("fixed", description="old")
    before = db_snapshot()

    response = client_with("kms.change_key").patch(
        key_url(key),
        {"description": "new", "alias": "renamed", "key_state": "Disabled"},
        format="json",
    )

    assert response.status_code == 400
    assert set(response.data["fields"]) == {"alias", "key_state"}
    assert db_snapshot() == before


def test_it_refuses_a_description_over_1024_bytes_in_patch(client_with):
    key = make_key("short", description="old")

    response = client_with("kms.change_key").patch(
        key_url(key), {"description": "x" * 1025}, format="json"
    )

    assert response.status_code == 400
    assert list(response.data["fields"]) == ["description"]
    assert Key.objects.get(pk=key.pk).description == "old"


def test_it_returns_the_public_key_as_pem_and_base64_der(client_with):
    key = make_key("pub", key_usage=ECC)

    response = client_with("kms.view_key").get(key_url(key, "public-key"))

    assert response.status_code == 200
    assert set(response.data) == {
        "key_id",
        "key_usage",
        "public_key_pem",
        "public_key",
        "fingerprint",
    }
    der = base64.b64decode(response.data["public_key"])
    from_pem = serialization.load_pem_public_key(response.data["public_key_pem"].encode())
    assert (
        from_pem.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        == der
    )
    assert isinstance(from_pem, ec.EllipticCurvePublicKey)
    assert response.data["fingerprint"] == hashlib.sha256(der).hexdigest()
    assert response.data["key_usage"] == ECC


# --- signing and verifying ------------------------------------------------------------

ALGORITHMS = [
    (RSA, "RSA_PKCS1_SHA_256"),
    (RSA, "RSA_PSS_SHA_256"),
    (ECC, "ECDSA_SHA_256"),
]


def independently_verify(public_der: bytes, algorithm: str, data: bytes, signature: bytes):
    """Check a signature over ``data`` with ``cryptography`` alone (raises if invalid)."""
    public = serialization.load_der_public_key(public_der)
    if algorithm == "RSA_PKCS1_SHA_256":
        assert isinstance(public, rsa.RSAPublicKey)
        public.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    elif algorithm == "RSA_PSS_SHA_256":
        assert isinstance(public, rsa.RSAPublicKey)
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        public.verify(signature, data, pss, hashes.SHA256())
    else:
        assert isinstance(public, ec.EllipticCurvePublicKey)
        public.verify(signature, data, ec.ECDSA(hashes.SHA256()))


@pytest.mark.parametrize("key_usage, algorithm", ALGORITHMS)
@pytest.mark.parametrize("message_type", ["RAW", "DIGEST"])
def test_it_signs_what_cryptography_verifies_and_verifies_it_back(
    client_with, key_usage, algorithm, message_type
):
    key = make_key("round-trip", key_usage=key_usage)
    client = client_with("kms.use_key", "kms.view_key")
    data = b"sha256:" + b"ab" * 32
    message = hashlib.sha256(data).digest() if message_type == "DIGEST" else data

    signed = client.post(
        key_url(key, "sign"),
        {"message": b64(message), "algorithm": algorithm, "message_type": message_type},
        format="json",
    )
    public = client.get(key_url(key, "public-key")).data

    assert signed.status_code == 200, signed.data
    assert signed.data["key_id"] == str(key.key_id)
    assert (signed.data["algorithm"], signed.data["message_type"]) == (algorithm, message_type)
    signature = base64.b64decode(signed.data["signature"])
    # Whether RAW or DIGEST, the signature is over SHA-256(data).
    public_der = base64.b64decode(public["public_key"])
    independently_verify(public_der, algorithm, data, signature)
    with pytest.raises(InvalidSignature):
        independently_verify(public_der, algorithm, data + b"!", signature)

    verify = {
        "signature": signed.data["signature"],
        "algorithm": algorithm,
        "message_type": message_type,
    }
    good = client.post(key_url(key, "verify"), {**verify, "message": b64(message)}, format="json")
    tampered = bytes([message[0] ^ 1]) + message[1:]
    bad = client.post(key_url(key, "verify"), {**verify, "message": b64(tampered)}, format="json")
    assert good.status_code == bad.status_code == 200
    assert good.data == {"signature_valid": True}
    assert bad.data == {"signature_valid": False}


@pytest.mark.parametrize("key_usage, algorithm", ALGORITHMS)
def test_it_reports_a_garbage_signature_as_invalid_not_as_an_error(
    client_with, key_usage, algorithm
):
    key = make_key("garbage", key_usage=key_usage)

    response = client_with("kms.use_key").post(
        key_url(key, "verify"),
        {"message": b64(b"m"), "signature": b64(b"\x30\x02garbage"), "algorithm": algorithm},
        format="json",
    )

    assert response.status_code == 200
    assert response.data == {"signature_valid": False}


def test_it_signs_raw_by_default(client_with):
    key = make_key("default-raw")

    response = client_with("kms.use_key").post(
        key_url(key, "sign"),
        {"message": b64(b"payload"), "algorithm": "RSA_PKCS1_SHA_256"},
        format="json",
    )

    assert response.status_code == 200
    assert response.data["message_type"] == "RAW"
    independently_verify(
        serialization.load_pem_public_key(key.public_key_pem.encode()).public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "RSA_PKCS1_SHA_256",
        b"payload",
        base64.b64decode(response.data["signature"]),
    )


@pytest.mark.parametrize(
    "action, payload, field",
    [
        ("sign", {"message": "not base64!", "algorithm": "RSA_PKCS1_SHA_256"}, "message"),
        ("sign", {"message": "YWJj=", "algorithm": "RSA_PKCS1_SHA_256"}, "message"),
        ("sign", {"message": 12, "algorithm": "RSA_PKCS1_SHA_256"}, "message"),
        ("sign", {"message": "", "algorithm": "RSA_PKCS1_SHA_256"}, "message"),
        (
            "sign",
            {"message": b64(b"m"), "algorithm": "RSA_PKCS1_SHA_256", "message_type": "HEX"},
            "message_type",
        ),
        (
            "sign",
            {"message": b64(b"short"), "algorithm": "RSA_PKCS1_SHA_256", "message_type": "DIGEST"},
            "message",
        ),
        ("sign", {"message": b64(b"x" * 4097), "algorithm": "RSA_PKCS1_SHA_256"}, "message"),
        ("sign", {"message": b64(b"m")}, "algorithm"),
        (
            "sign",
            {"message": b64(b"m"), "algorithm": "RSA_PKCS1_SHA_256", "service": "nobody"},
            "service",
        ),
        (
            "sign",
            {"message": b64(b"m"), "algorithm": "RSA_PKCS1_SHA_256", "service": ""},
            "service",
        ),
        (
            "verify",
            {"message": b64(b"m"), "signature": "%%%", "algorithm": "RSA_PKCS1_SHA_256"},
            "signature",
        ),
        (
            "verify",
            {"message": "@@", "signature": b64(b"s"), "algorithm": "RSA_PKCS1_SHA_256"},
            "message",
        ),
    ],
    ids=[
        "sign-bad-base64",
        "sign-bad-padding",
        "sign-not-a-string",
        "sign-empty",
        "sign-unknown-message-type",
        "sign-digest-wrong-length",
        "sign-raw-too-long",
        "sign-no-algorithm",
        "sign-unknown-service",
        "sign-blank-service",
        "verify-bad-signature-base64",
        "verify-bad-message-base64",
    ],
)
def test_it_rejects_bad_sign_and_verify_input_naming_the_field(client_with, action, payload, field):
    key = make_key("strict")

    response = client_with("kms.use_key").post(key_url(key, action), payload, format="json")

    assert response.status_code == 400, response.data
    assert response.data["code"] in {"InvalidParameter", "InvalidParameterValue"}
    assert list(response.data["fields"]) == [field]


@pytest.mark.parametrize(
    "key_usage, algorithm", [(RSA, "ECDSA_SHA_256"), (ECC, "RSA_PSS_SHA_256"), (RSA, "SM2DSA")]
)
@pytest.mark.parametrize("action", ["sign", "verify"])
def test_it_rejects_an_algorithm_the_keys_usage_does_not_allow(
    client_with, key_usage, algorithm, action
):
    key = make_key("usage", key_usage=key_usage)
    payload = {"message": b64(b"m"), "signature": b64(b"s"), "algorithm": algorithm}

    response = client_with("kms.use_key").post(key_url(key, action), payload, format="json")

    assert response.status_code == 400
    assert response.data["code"] == "InvalidParameterValue.InvalidKeyUsage"


# --- states -----------------------------------------------------------------------


@pytest.mark.parametrize("action", ["sign", "verify", "public-key"])
@pytest.mark.parametrize(
    "make, code",
    [
        (disabled_key, "ResourceUnavailable.CmkDisabled"),
        (pending_key, "ResourceUnavailable.KeyPendingDelete"),
    ],
    ids=["disabled", "pending-delete"],
)
def test_it_refuses_to_use_a_key_that_is_not_enabled(superuser_client, action, make, code):
    key = make(alias="resting")
    before = db_snapshot()
    payload = {"message": b64(b"m"), "signature": b64(b"s"), "algorithm": "RSA_PKCS1_SHA_256"}

    if action == "public-key":
        response = superuser_client.get(key_url(key, action))
    else:
        response = superuser_client.post(key_url(key, action), payload, format="json")

    assert response.status_code == 409
    assert response.data["code"] == code
    assert db_snapshot() == before


@pytest.mark.parametrize(
    "make, action, payload, code",
    [
        (
            make_key,
            "schedule-deletion",
            {"pending_window_in_days": 7},
            "ResourceUnavailable.CmkShouldBeDisabled",
        ),
        (pending_key, "enable", None, "ResourceUnavailable.KeyPendingDelete"),
        (pending_key, "disable", None, "ResourceUnavailable.KeyPendingDelete"),
        (
            pending_key,
            "schedule-deletion",
            {"pending_window_in_days": 7},
            "ResourceUnavailable.KeyPendingDelete",
        ),
        (make_key, "cancel-deletion", None, "ResourceUnavailable.CmkStateNotSupport"),
        (disabled_key, "cancel-deletion", None, "ResourceUnavailable.CmkStateNotSupport"),
    ],
    ids=[
        "schedule-enabled",
        "enable-pending",
        "disable-pending",
        "schedule-pending",
        "cancel-enabled",
        "cancel-disabled",
    ],
)
def test_it_answers_409_with_the_state_code_for_a_transition_the_state_forbids(
    superuser_client, make, action, payload, code
):
    key = make(alias="stateful")
    before = db_snapshot()

    response = call(superuser_client, "POST", key_url(key, action), payload)

    assert response.status_code == 409
    assert response.data["code"] == code
    assert db_snapshot() == before


def test_it_walks_a_key_through_its_states(client_with):
    key = make_key("lifecycle")
    client = client_with("kms.manage_key_state")

    disabled = client.post(key_url(key, "disable"))
    scheduled = client.post(
        key_url(key, "schedule-deletion"), {"pending_window_in_days": 30}, format="json"
    )
    row = Key.objects.get(pk=key.pk)
    cancelled = client.post(key_url(key, "cancel-deletion"))
    enabled = client.post(key_url(key, "enable"))

    assert disabled.data["key_state"] == "Disabled"
    assert scheduled.data["key_state"] == "PendingDelete"
    assert row.state == KeyState.PENDING_DELETE
    expected = timezone.now() + timedelta(days=30)
    assert abs(row.deletion_date - expected) < timedelta(minutes=1)
    assert scheduled.data["deletion_date"] is not None
    assert cancelled.data["key_state"] == "Disabled"
    assert cancelled.data["deletion_date"] is None
    assert enabled.data["key_state"] == "Enabled"
    final = Key.objects.get(pk=key.pk)
    assert (final.state, final.deletion_date) == (KeyState.ENABLED, None)


def test_it_treats_enabling_an_enabled_key_as_done(client_with):
    key = make_key("already-on")

    response = client_with("kms.manage_key_state").post(key_url(key, "enable"))

    assert response.status_code == 200
    assert response.data["key_state"] == "Enabled" == state_of(key)


@pytest.mark.parametrize("window", [6, 31, 0, -7, "seven", None, 7.5])
def test_it_rejects_a_pending_window_outside_7_to_30_days(client_with, window):
    key = disabled_key(alias="window")
    before = db_snapshot()

    response = client_with("kms.manage_key_state").post(
        key_url(key, "schedule-deletion"), {"pending_window_in_days": window}, format="json"
    )

    assert response.status_code == 400
    assert list(response.data["fields"]) == ["pending_window_in_days"]
    assert db_snapshot() == before


# --- the registry-signing service authorization -------------------------------------------


def test_it_refuses_to_sign_for_an_unauthorized_service_then_signs_once_granted(client_with):
    key = make_key("registry")
    signer = client_with("kms.use_key")
    payload = {"message": b64(b"image"), "algorithm": "RSA_PKCS1_SHA_256", "service": SERVICE}

    refused = signer.post(key_url(key, "sign"), payload, format="json")
    granted = client_with("kms.add_serviceauthorization").post(
        f"{BASE}/service-authorizations/", {"service": SERVICE, "note": "go"}, format="json"
    )
    allowed = signer.post(key_url(key, "sign"), payload, format="json")

    assert refused.status_code == 403
    assert refused.data["code"] == "UnauthorizedOperation.ServiceNotAuthorized"
    assert "/api/v1/kms/service-authorizations/" in refused.data["message"]
    assert '"service": "registry-signing"' in refused.data["message"]
    assert granted.status_code == 201
    assert allowed.status_code == 200
    assert operations.verify(
        key_id=str(key.key_id),
        message=b"image",
        algorithm="RSA_PKCS1_SHA_256",
        signature=base64.b64decode(allowed.data["signature"]),
    )


def test_it_signs_without_a_service_regardless_of_authorizations(client_with):
    key = make_key("plain")
    assert not services.is_service_authorized(SERVICE)

    response = client_with("kms.use_key").post(
        key_url(key, "sign"),
        {"message": b64(b"x"), "algorithm": "RSA_PKCS1_SHA_256"},
        format="json",
    )

    assert response.status_code == 200


def test_it_refuses_to_sign_for_the_service_after_a_revoke(client_with):
    key = make_key("revoked")
    services.grant_service_authorization(service=SERVICE)
    revoked = client_with("kms.change_serviceauthorization").post(
        f"{BASE}/service-authorizations/revoke/", {"service": SERVICE}, format="json"
    )

    response = client_with("kms.use_key").post(
        key_url(key, "sign"),
        {"message": b64(b"x"), "algorithm": "RSA_PKCS1_SHA_256", "service": SERVICE},
        format="json",
    )

    assert revoked.status_code == 200
    assert response.status_code == 403
    assert response.data["code"] == "UnauthorizedOperation.ServiceNotAuthorized"


def test_it_grants_idempotently_201_then_200_with_the_same_record(client_with):
    user = make_user("granter", perms=["kms.add_serviceauthorization"])
    client = token_client(user)

    first = client.post(
        f"{BASE}/service-authorizations/", {"service": SERVICE, "note": "ticket 42"}, format="json"
    )
    second = client.post(f"{BASE}/service-authorizations/", {"service": SERVICE}, format="json")

    assert first.status_code == 201
    assert second.status_code == 200
    assert first.data["id"] == second.data["id"]
    assert first.data["granted_by"] == "granter"
    assert first.data["note"] == "ticket 42"
    assert first.data["active"] is True
    assert ServiceAuthorization.objects.count() == 1
    assert ServiceAuthorization.objects.get().granted_by == user


@pytest.mark.parametrize("path", ["", "revoke/"])
def test_it_rejects_an_unknown_service_name(superuser_client, path):
    response = superuser_client.post(
        f"{BASE}/service-authorizations/{path}", {"service": "mail-relay"}, format="json"
    )

    assert response.status_code == 400
    assert list(response.data["fields"]) == ["service"]
    assert ServiceAuthorization.objects.count() == 0


def test_it_revokes_with_the_record_and_answers_404_when_nothing_is_active(client_with):
    services.grant_service_authorization(service=SERVICE)
    revoker = make_user("revoker", perms=["kms.change_serviceauthorization"])
    client = token_client(revoker)

    revoked = client.post(
        f"{BASE}/service-authorizations/revoke/", {"service": SERVICE}, format="json"
    )
    again = client.post(
        f"{BASE}/service-authorizations/revoke/", {"service": SERVICE}, format="json"
    )

    assert revoked.status_code == 200
    assert revoked.data["active"] is False
    assert revoked.data["revoked_by"] == "revoker"
    assert revoked.data["revoked_at"] is not None
    assert again.status_code == 404
    assert again.data["code"] == "ResourceNotFound"
    grant = ServiceAuthorization.objects.get()
    assert grant.revoked_by == revoker
    assert grant.revoked_at is not None


def test_it_lists_the_authorization_history_newest_first(client_with):
    alice = make_user("alice")
    bob = make_user("bob")
    first = services.grant_service_authorization(service=SERVICE, granted_by=alice, note="one")
    services.revoke_service_authorization(service=SERVICE, revoked_by=bob)
    second = services.grant_service_authorization(service=SERVICE, granted_by=bob, note="two")

    response = client_with("kms.view_serviceauthorization").get(f"{BASE}/service-authorizations/")

    assert response.status_code == 200
    rows = response.data["results"]
    assert [row["id"] for row in rows] == [second.pk, first.pk]
    assert set(rows[0]) == {
        "id",
        "service",
        "granted_by",
        "granted_at",
        "note",
        "revoked_by",
        "revoked_at",
        "active",
    }
    assert (rows[0]["granted_by"], rows[0]["active"], rows[0]["revoked_by"]) == ("bob", True, None)
    assert (rows[1]["granted_by"], rows[1]["active"], rows[1]["revoked_by"]) == (
        "alice",
        False,
        "bob",
    )


# --- secrets never leave -------------------------------------------------------------


def test_no_response_carries_private_or_sealed_material(superuser_client):
    client = superuser_client
    created = client.post(f"{BASE}/keys/", {"alias": "secretive"}, format="json")
    key = Key.objects.get(alias="secretive")
    sealed = bytes(key.sealed_private_key)
    responses = [
        created,
        client.get(f"{BASE}/keys/"),
        client.get(key_url(key)),
        client.get(key_url(key, "public-key")),
        client.post(
            key_url(key, "sign"),
            {"message": b64(b"m"), "algorithm": "RSA_PSS_SHA_256"},
            format="json",
        ),
        client.patch(key_url(key), {"description": "d"}, format="json"),
        client.post(key_url(key, "disable")),
        client.post(
            key_url(key, "schedule-deletion"), {"pending_window_in_days": 7}, format="json"
        ),
        client.post(key_url(key, "cancel-deletion")),
        client.post(key_url(key, "enable")),
        client.options(key_url(key)),
        client.get(key_url(key), HTTP_ACCEPT="text/html"),
    ]

    for response in responses:
        assert response.status_code in {200, 201}, response.content[:300]
        body = response.content
        assert b"PRIVATE KEY" not in body
        assert b"sealed" not in body
        assert b"master_key_version" not in body
        assert sealed not in body
        assert b64(sealed).encode() not in body
        assert sealed.hex().encode() not in body
        assert base64.b64encode(sealed[:24]) not in body
