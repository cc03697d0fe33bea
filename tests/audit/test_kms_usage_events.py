"""Every sign and verify through the KMS API leaves one audit event: the key, the caller,
the algorithm, the SHA-256 of the message and the outcome; never the message nor the
signature."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid

import pytest

from audit.models import AuditEvent
from audit.scoping import visible_events
from kms import services as kms_services
from kms.models import AuthorizedService
from kms.services import operations
from tests.accounts.support import grant
from tests.audit.support import events, the_event, token_client
from tests.factories import make_key, make_user

pytestmark = pytest.mark.django_db

KEYS = "/api/v1/kms/keys"
ALGORITHM = "RSA_PKCS1_SHA_256"
# Distinctive bytes, to look for in everything the event stores.
MESSAGE = b"confidential-payload-5c1e-do-not-log"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _dump(event: AuditEvent) -> str:
    return json.dumps(AuditEvent.objects.filter(pk=event.pk).values().get(), default=str)


@pytest.fixture
def caller():
    return make_user("kms-caller", perms=["kms.use_key"])


def test_a_signature_through_the_api_records_key_caller_and_digest_not_the_message(caller):
    key = make_key("direct")

    response = token_client(caller, REMOTE_ADDR="203.0.113.50").post(
        f"{KEYS}/{key.key_id}/sign/",
        {"message": b64(MESSAGE), "algorithm": ALGORITHM},
        format="json",
    )

    assert response.status_code == 200, response.content
    signature = base64.b64decode(response.json()["signature"])
    event = the_event("kms.key.sign_requested")
    assert (event.actor_type, event.actor_id, event.actor_label, event.source_ip) == (
        "user",
        caller.pk,
        "kms-caller",
        "203.0.113.50",
    )
    assert (event.object_type, event.object_id) == ("kms.key", str(key.key_id))
    assert (event.instance_name, event.instance_id) == ("", None)  # superusers only
    assert event.details == {
        "key_id": str(key.key_id),
        "algorithm": ALGORITHM,
        "message_type": "RAW",
        "message_sha256": hashlib.sha256(MESSAGE).hexdigest(),
        "message_bytes": len(MESSAGE),
        "outcome": "signed",
    }
    stored = _dump(event)
    for secret in (
        MESSAGE.decode(),
        b64(MESSAGE),
        response.json()["signature"],
        b64(signature[:24]),
    ):
        assert secret not in stored


def test_verifications_record_valid_and_invalid_outcomes(caller):
    key = make_key("checked")
    signature = operations.sign(key_id=str(key.key_id), message=MESSAGE, algorithm=ALGORITHM)
    api = token_client(caller)
    body = {"signature": b64(signature), "algorithm": ALGORITHM}

    good = api.post(
        f"{KEYS}/{key.key_id}/verify/", {**body, "message": b64(MESSAGE)}, format="json"
    )
    bad = api.post(
        f"{KEYS}/{key.key_id}/verify/", {**body, "message": b64(MESSAGE + b"!")}, format="json"
    )

    assert (good.json(), bad.json()) == ({"signature_valid": True}, {"signature_valid": False})
    first, second = events("kms.key.verify_requested")
    assert [(e.actor_id, e.object_id) for e in (first, second)] == [
        (caller.pk, str(key.key_id))
    ] * 2
    assert (first.details["outcome"], second.details["outcome"]) == ("valid", "invalid")
    assert first.details["message_sha256"] == hashlib.sha256(MESSAGE).hexdigest()
    assert second.details["message_sha256"] == hashlib.sha256(MESSAGE + b"!").hexdigest()
    for event in (first, second):
        assert MESSAGE.decode() not in _dump(event)
        assert b64(signature) not in _dump(event)
    # The service's own sign above (in process, not through the API) recorded nothing.
    assert not events("kms.key.sign_requested")


def test_refused_signs_and_verifies_are_recorded_with_the_error_code(caller):
    key = make_key("switched-off")
    kms_services.disable_key(key_id=str(key.key_id))
    api = token_client(caller)
    unknown = uuid.uuid4()

    disabled = api.post(
        f"{KEYS}/{key.key_id}/sign/",
        {"message": b64(MESSAGE), "algorithm": ALGORITHM},
        format="json",
    )
    missing = api.post(
        f"{KEYS}/{unknown}/verify/",
        {"message": b64(MESSAGE), "signature": b64(b"s"), "algorithm": ALGORITHM},
        format="json",
    )
    not_authorized = api.post(
        f"{KEYS}/{make_key('other').key_id}/sign/",
        {
            "message": b64(MESSAGE),
            "algorithm": ALGORITHM,
            "service": AuthorizedService.REGISTRY_SIGNING,
        },
        format="json",
    )

    assert (disabled.status_code, missing.status_code, not_authorized.status_code) == (
        409,
        404,
        403,
    )
    signs = events("kms.key.sign_requested")
    [verify] = events("kms.key.verify_requested")
    assert [(e.object_id, e.details["outcome"], e.details["error_code"]) for e in signs] == [
        (str(key.key_id), "refused", disabled.json()["code"]),
        (signs[1].object_id, "refused", not_authorized.json()["code"]),
    ]
    assert signs[1].details["on_behalf_of"] == AuthorizedService.REGISTRY_SIGNING
    assert (verify.object_id, verify.details["outcome"], verify.details["error_code"]) == (
        str(unknown),
        "refused",
        missing.json()["code"],
    )
    assert {event.actor_id for event in [*signs, verify]} == {caller.pk}


def test_requests_that_never_reach_a_key_record_nothing(caller):
    key = make_key("untouched")
    before = AuditEvent.objects.count()

    forbidden = token_client(make_user("no-perm")).post(
        f"{KEYS}/{key.key_id}/sign/",
        {"message": b64(MESSAGE), "algorithm": ALGORITHM},
        format="json",
    )
    malformed = token_client(caller).post(
        f"{KEYS}/{key.key_id}/sign/",
        {"message": "not base64!", "algorithm": ALGORITHM},
        format="json",
    )

    assert (forbidden.status_code, malformed.status_code) == (403, 400)
    assert AuditEvent.objects.count() == before


def test_sub_accounts_do_not_read_kms_usage_events(caller, instance):
    response = token_client(caller).post(
        f"{KEYS}/{make_key('hidden').key_id}/sign/",
        {"message": b64(MESSAGE), "algorithm": ALGORITHM},
        format="json",
    )
    reader = make_user("reader", is_staff=True)
    grant(reader, instance, role="reader")

    assert response.status_code == 200
    event = the_event("kms.key.sign_requested")
    assert not visible_events(reader).filter(pk=event.pk).exists()
    assert visible_events(make_user("root", is_superuser=True)).filter(pk=event.pk).exists()
