"""KMS service functions: states, sign/verify, sealing, authorization, caching."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils
from django.db import connection
from django.utils import timezone

from kms import crypto, services
from kms.errors import (
    AliasAlreadyExists,
    CmkDisabled,
    CmkShouldBeDisabled,
    CmkStateNotSupport,
    InvalidKeyUsage,
    InvalidParameter,
    KeyInUse,
    KeyNotFound,
    KeyPendingDelete,
    MasterKeyError,
    ServiceNotAuthorized,
)
from kms.models import AuthorizedService, Key, KeyState, KeyUsage, ServiceAuthorization
from kms.services import material, operations
from tests.factories import make_key, make_user

pytestmark = pytest.mark.django_db

PKCS1 = crypto.RSA_PKCS1_SHA_256
PSS = crypto.RSA_PSS_SHA_256
ECDSA = crypto.ECDSA_SHA_256


def _public(key: Key):
    return serialization.load_pem_public_key(key.public_key_pem.encode())


# --- creation -------------------------------------------------------------------------


def test_it_creates_an_enabled_rsa_2048_key_in_the_default_region():
    key = make_key("signer")
    key.refresh_from_db()
    assert key.state == KeyState.ENABLED
    assert key.key_spec == "RSA_2048"
    assert key.region == "ap-guangzhou"
    assert _public(key).key_size == 2048
    assert key.public_key_fingerprint == crypto.fingerprint(key.public_key_pem)
    assert key.master_key_version == 1


def test_it_fixes_the_key_spec_from_the_usage_for_ecc():
    key = make_key("ecc", key_usage=KeyUsage.ECC)
    assert key.key_spec == "ECC_NIST_P256"
    assert isinstance(_public(key), ec.EllipticCurvePublicKey)


@pytest.mark.parametrize(
    ("alias", "field_message"),
    [
        ("", "Alias is required."),
        ("-starts-with-dash", "Alias must be 1-60"),
        ("has space", "Alias must be 1-60"),
        ("a" * 61, "Alias must be 1-60"),
        ("kms-reserved", "reserved"),
        ("ünicode", "Alias must be 1-60"),
    ],
)
def test_it_rejects_a_bad_alias_with_a_field_message(alias, field_message):
    with pytest.raises(InvalidParameter) as info:
        services.create_key(alias=alias)
    assert field_message in info.value.fields["alias"][0]
    assert Key.objects.count() == 0


def test_it_accepts_aliases_at_the_edges_of_the_rule():
    assert make_key("a").alias == "a"
    assert make_key("A" * 60).alias == "A" * 60
    assert make_key("9_x-Y").alias == "9_x-Y"


def test_it_rejects_a_duplicate_alias():
    make_key("taken")
    with pytest.raises(AliasAlreadyExists):
        services.create_key(alias="taken")
    assert Key.objects.filter(alias="taken").count() == 1


def test_it_limits_the_description_to_1024_bytes_not_characters():
    make_key("ok", description="é" * 512)  # 1024 bytes
    with pytest.raises(InvalidParameter) as info:
        services.create_key(alias="too-long", description="é" * 513)
    assert "1024 bytes" in info.value.fields["description"][0]


def test_it_rejects_an_unknown_region_and_usage():
    with pytest.raises(InvalidParameter) as info:
        services.create_key(alias="r", region="mars-1")
    assert "mars-1" in info.value.fields["region"][0]
    with pytest.raises(InvalidParameter) as info:
        services.create_key(alias="u", key_usage="ENCRYPT_DECRYPT")
    assert "ENCRYPT_DECRYPT" in info.value.fields["key_usage"][0]


# --- private material at rest ---------------------------------------------------------------


def test_a_raw_database_read_finds_no_usable_private_key():
    key = make_key("sealed")
    private = material.private_key(Key.objects.get(pk=key.pk))
    numbers = private.private_numbers()
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM kms_key")
        rows = cursor.fetchall()
    assert len(rows) == 1
    raw = b"".join(
        bytes(value) if isinstance(value, bytes | memoryview) else str(value).encode()
        for value in rows[0]
    )
    assert b"PRIVATE KEY" not in raw
    assert crypto.private_key_to_der(private) not in raw
    assert numbers.d.to_bytes(256, "big") not in raw
    assert numbers.p.to_bytes(128, "big") not in raw
    sealed = bytes(Key.objects.get(pk=key.pk).sealed_private_key)
    with pytest.raises(ValueError):
        serialization.load_der_private_key(sealed, password=None)


def test_sealed_material_swapped_between_rows_does_not_open():
    first, second = make_key("first"), make_key("second")
    Key.objects.filter(pk=first.pk).update(
        sealed_private_key=Key.objects.get(pk=second.pk).sealed_private_key
    )
    with pytest.raises(MasterKeyError) as info:
        operations.sign(key_id=first.key_id, message=b"m", algorithm=PKCS1)
    assert str(first.key_id) in info.value.message


# --- sign / verify, checked independently -----------------------------------------------


@pytest.mark.parametrize("message_type", ["RAW", "DIGEST"])
def test_rsa_pkcs1_signatures_verify_with_cryptography(message_type):
    key = make_key("pkcs1")
    payload = b"cosign payload bytes"
    message = hashlib.sha256(payload).digest() if message_type == "DIGEST" else payload
    signature = operations.sign(
        key_id=key.key_id, message=message, algorithm=PKCS1, message_type=message_type
    )
    _public(key).verify(signature, payload, padding.PKCS1v15(), hashes.SHA256())
    assert operations.verify(
        key_id=key.key_id,
        message=message,
        signature=signature,
        algorithm=PKCS1,
        message_type=message_type,
    )


def test_raw_and_digest_pkcs1_signatures_are_identical():
    key = make_key("same")
    payload = b"payload"
    raw = operations.sign(key_id=key.key_id, message=payload, algorithm=PKCS1)
    digest = operations.sign(
        key_id=key.key_id,
        message=hashlib.sha256(payload).digest(),
        algorithm=PKCS1,
        message_type="DIGEST",
    )
    assert raw == digest


@pytest.mark.parametrize("message_type", ["RAW", "DIGEST"])
def test_rsa_pss_signatures_verify_with_cryptography(message_type):
    key = make_key("pss")
    payload = b"pss payload"
    message = hashlib.sha256(payload).digest() if message_type == "DIGEST" else payload
    signature = operations.sign(
        key_id=key.key_id, message=message, algorithm=PSS, message_type=message_type
    )
    _public(key).verify(
        signature,
        payload,
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO),
        hashes.SHA256(),
    )


@pytest.mark.parametrize("message_type", ["RAW", "DIGEST"])
def test_ecdsa_signatures_verify_with_cryptography(message_type):
    key = make_key("ecdsa", key_usage=KeyUsage.ECC)
    payload = b"ecc payload"
    message = hashlib.sha256(payload).digest() if message_type == "DIGEST" else payload
    signature = operations.sign(
        key_id=key.key_id, message=message, algorithm=ECDSA, message_type=message_type
    )
    if message_type == "DIGEST":
        _public(key).verify(signature, message, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    else:
        _public(key).verify(signature, payload, ec.ECDSA(hashes.SHA256()))


def test_verify_reports_a_tampered_message_as_invalid():
    key = make_key("tamper")
    signature = operations.sign(key_id=key.key_id, message=b"original", algorithm=PKCS1)
    assert not operations.verify(
        key_id=key.key_id, message=b"tampered", signature=signature, algorithm=PKCS1
    )
    with pytest.raises(InvalidSignature):
        _public(key).verify(signature, b"tampered", padding.PKCS1v15(), hashes.SHA256())


def test_a_signature_from_another_key_does_not_verify():
    one, other = make_key("one"), make_key("other")
    signature = operations.sign(key_id=one.key_id, message=b"m", algorithm=PKCS1)
    assert not operations.verify(
        key_id=other.key_id, message=b"m", signature=signature, algorithm=PKCS1
    )


@pytest.mark.parametrize(
    ("usage", "algorithm"),
    [
        (KeyUsage.RSA_2048, ECDSA),
        (KeyUsage.ECC, PKCS1),
        (KeyUsage.ECC, PSS),
        (KeyUsage.RSA_2048, "RSA_PKCS1_SHA_1"),
    ],
)
def test_it_refuses_an_algorithm_the_usage_does_not_allow(usage, algorithm):
    key = make_key("usage", key_usage=usage)
    with pytest.raises(InvalidKeyUsage) as info:
        operations.sign(key_id=key.key_id, message=b"m", algorithm=algorithm)
    assert info.value.code == "InvalidParameterValue.InvalidKeyUsage"
    assert usage in info.value.message


@pytest.mark.parametrize(
    ("message", "message_type", "expected"),
    [
        (b"", "RAW", "must not be empty"),
        (b"x" * 4097, "RAW", "at most 4096 bytes"),
        (b"x" * 31, "DIGEST", "exactly 32 bytes"),
        (b"x" * 33, "DIGEST", "exactly 32 bytes"),
        (b"x", "HEX", "RAW or DIGEST"),
    ],
)
def test_it_validates_the_message_size_for_its_type(message, message_type, expected):
    key = make_key("sizes")
    with pytest.raises(InvalidParameter) as info:
        operations.sign(
            key_id=key.key_id, message=message, algorithm=PKCS1, message_type=message_type
        )
    assert expected in info.value.message


def test_a_raw_message_of_exactly_4096_bytes_is_signed():
    key = make_key("edge")
    assert len(operations.sign(key_id=key.key_id, message=b"x" * 4096, algorithm=PKCS1)) == 256


@pytest.mark.parametrize("key_id", ["00000000-0000-0000-0000-000000000000", "not-a-uuid"])
def test_an_unknown_or_malformed_key_id_is_not_found(key_id):
    with pytest.raises(KeyNotFound):
        operations.sign(key_id=key_id, message=b"m", algorithm=PKCS1)
    with pytest.raises(KeyNotFound):
        services.describe_key(key_id=key_id)


# --- state machine -------------------------------------------------------------------------


def test_disable_then_enable_round_trip():
    key = make_key("toggle")
    assert services.disable_key(key_id=key.key_id).state == KeyState.DISABLED
    assert services.enable_key(key_id=key.key_id).state == KeyState.ENABLED


def test_enable_and_disable_are_idempotent():
    key = make_key("idem")
    assert services.enable_key(key_id=key.key_id).state == KeyState.ENABLED
    services.disable_key(key_id=key.key_id)
    assert services.disable_key(key_id=key.key_id).state == KeyState.DISABLED


def test_a_disabled_key_cannot_sign_verify_or_export_its_public_key():
    key = make_key("off")
    signature = operations.sign(key_id=key.key_id, message=b"m", algorithm=PKCS1)
    services.disable_key(key_id=key.key_id)
    with pytest.raises(CmkDisabled) as info:
        operations.sign(key_id=key.key_id, message=b"m", algorithm=PKCS1)
    assert info.value.code == "ResourceUnavailable.CmkDisabled"
    with pytest.raises(CmkDisabled):
        operations.verify(key_id=key.key_id, message=b"m", signature=signature, algorithm=PKCS1)
    with pytest.raises(CmkDisabled):
        operations.get_public_key(key_id=key.key_id)


def test_scheduling_deletion_needs_a_disabled_key():
    key = make_key("enabled")
    with pytest.raises(CmkShouldBeDisabled) as info:
        services.schedule_key_deletion(key_id=key.key_id, pending_window_in_days=7)
    assert info.value.code == "ResourceUnavailable.CmkShouldBeDisabled"
    key.refresh_from_db()
    assert key.state == KeyState.ENABLED
    assert key.deletion_date is None


@pytest.mark.parametrize("days", [7, 30])
def test_scheduling_deletion_sets_the_deletion_date(days):
    key = make_key("doomed")
    services.disable_key(key_id=key.key_id)
    before = timezone.now()
    services.schedule_key_deletion(key_id=key.key_id, pending_window_in_days=days)
    key.refresh_from_db()
    assert key.state == KeyState.PENDING_DELETE
    assert before + timedelta(days=days) <= key.deletion_date
    assert key.deletion_date <= timezone.now() + timedelta(days=days)


@pytest.mark.parametrize("days", [6, 31, 0, -1, "7", 7.5, True])
def test_scheduling_deletion_refuses_a_window_outside_7_to_30_days(days):
    key = make_key("window")
    services.disable_key(key_id=key.key_id)
    with pytest.raises(InvalidParameter) as info:
        services.schedule_key_deletion(key_id=key.key_id, pending_window_in_days=days)
    assert "7 to 30" in info.value.message
    key.refresh_from_db()
    assert key.state == KeyState.DISABLED


def test_a_key_pending_deletion_cannot_sign_or_be_enabled_or_rescheduled():
    key = make_key("pending")
    services.disable_key(key_id=key.key_id)
    services.schedule_key_deletion(key_id=key.key_id, pending_window_in_days=7)
    with pytest.raises(KeyPendingDelete) as info:
        operations.sign(key_id=key.key_id, message=b"m", algorithm=PKCS1)
    assert info.value.code == "ResourceUnavailable.KeyPendingDelete"
    with pytest.raises(KeyPendingDelete):
        services.enable_key(key_id=key.key_id)
    with pytest.raises(KeyPendingDelete):
        services.disable_key(key_id=key.key_id)
    with pytest.raises(KeyPendingDelete):
        services.schedule_key_deletion(key_id=key.key_id, pending_window_in_days=8)
    key.refresh_from_db()
    assert key.state == KeyState.PENDING_DELETE


def test_cancelling_deletion_returns_the_key_to_disabled():
    key = make_key("saved")
    services.disable_key(key_id=key.key_id)
    services.schedule_key_deletion(key_id=key.key_id, pending_window_in_days=7)
    services.cancel_key_deletion(key_id=key.key_id)
    key.refresh_from_db()
    assert key.state == KeyState.DISABLED
    assert key.deletion_date is None
    services.enable_key(key_id=key.key_id)
    assert operations.sign(key_id=key.key_id, message=b"m", algorithm=PKCS1)


@pytest.mark.parametrize("disable_first", [False, True])
def test_cancelling_deletion_of_a_key_not_pending_is_refused(disable_first):
    key = make_key("not-pending")
    if disable_first:
        services.disable_key(key_id=key.key_id)
    with pytest.raises(CmkStateNotSupport) as info:
        services.cancel_key_deletion(key_id=key.key_id)
    assert "PendingDelete" in info.value.message


def test_purge_destroys_only_keys_whose_deletion_date_passed():
    due, later, _kept = make_key("due"), make_key("later"), make_key("kept")
    for key in (due, later):
        services.disable_key(key_id=key.key_id)
        services.schedule_key_deletion(key_id=key.key_id, pending_window_in_days=7)
    Key.objects.filter(pk=due.pk).update(deletion_date=timezone.now() - timedelta(seconds=1))
    assert [k.alias for k in services.purge_deleted_keys(dry_run=True)] == ["due"]
    assert Key.objects.filter(pk=due.pk).exists()
    purged = services.purge_deleted_keys()
    assert [k.alias for k in purged] == ["due"]
    assert set(Key.objects.values_list("alias", flat=True)) == {"later", "kept"}
    with pytest.raises(KeyNotFound):
        operations.sign(key_id=due.key_id, message=b"m", algorithm=PKCS1)


def test_the_database_refuses_a_pending_delete_row_without_a_date():
    from django.db import IntegrityError, transaction

    key = make_key("constraint")
    with pytest.raises(IntegrityError), transaction.atomic():
        Key.objects.filter(pk=key.pk).update(state=KeyState.PENDING_DELETE)


def test_a_deletion_guard_can_refuse_scheduling(settings):
    settings.KMS_KEY_DELETION_GUARDS = ["tests.kms.guards.refuse_every_key"]
    key = make_key("guarded")
    services.disable_key(key_id=key.key_id)
    with pytest.raises(KeyInUse) as info:
        services.schedule_key_deletion(key_id=key.key_id, pending_window_in_days=7)
    assert "guarded" in str(info.value)
    key.refresh_from_db()
    assert key.state == KeyState.DISABLED


# --- service authorization --------------------------------------------------------------


def test_signing_on_behalf_of_the_registry_needs_the_service_authorization():
    key = make_key("svc")
    with pytest.raises(ServiceNotAuthorized) as info:
        operations.sign(
            key_id=key.key_id,
            message=b"m",
            algorithm=PKCS1,
            on_behalf_of=AuthorizedService.REGISTRY_SIGNING,
        )
    assert "Service authorizations" in info.value.message
    assert '"service": "registry-signing"' in info.value.message
    assert info.value.http_status == 403


def test_direct_use_by_a_user_needs_no_service_authorization():
    key = make_key("direct")
    assert operations.sign(key_id=key.key_id, message=b"m", algorithm=PKCS1)


def test_granting_is_recorded_idempotent_and_revocable():
    admin = make_user("root", is_superuser=True)
    key = make_key("granted")
    grant = services.grant_service_authorization(
        service=AuthorizedService.REGISTRY_SIGNING, granted_by=admin
    )
    assert (
        services.grant_service_authorization(
            service=AuthorizedService.REGISTRY_SIGNING, granted_by=admin
        ).pk
        == grant.pk
    )
    assert grant.granted_by == admin and grant.granted_at is not None
    assert operations.sign(
        key_id=key.key_id,
        message=b"m",
        algorithm=PKCS1,
        on_behalf_of=AuthorizedService.REGISTRY_SIGNING,
    )

    revoked = services.revoke_service_authorization(
        service=AuthorizedService.REGISTRY_SIGNING, revoked_by=admin
    )
    assert revoked.pk == grant.pk and revoked.revoked_at is not None
    assert revoked.revoked_by == admin
    with pytest.raises(ServiceNotAuthorized):
        operations.sign(
            key_id=key.key_id,
            message=b"m",
            algorithm=PKCS1,
            on_behalf_of=AuthorizedService.REGISTRY_SIGNING,
        )
    again = services.grant_service_authorization(service=AuthorizedService.REGISTRY_SIGNING)
    assert again.pk != grant.pk
    assert ServiceAuthorization.objects.count() == 2  # history is kept


def test_revoking_when_nothing_is_granted_returns_none():
    assert services.revoke_service_authorization(service=AuthorizedService.REGISTRY_SIGNING) is None


def test_an_unknown_service_is_rejected():
    with pytest.raises(InvalidParameter):
        services.grant_service_authorization(service="billing")
    key = make_key("unknown-svc")
    with pytest.raises(InvalidParameter):
        operations.sign(key_id=key.key_id, message=b"m", algorithm=PKCS1, on_behalf_of="billing")


# --- cache ---------------------------------------------------------------------------------


def test_the_private_key_is_opened_once_and_reused():
    key = make_key("cached")
    material.key_cache.clear()
    material.key_cache.hits = material.key_cache.misses = 0
    for _ in range(5):
        operations.sign(key_id=key.key_id, message=b"m", algorithm=PKCS1)
    assert material.key_cache.misses == 1
    assert material.key_cache.hits == 4


def test_a_state_change_evicts_the_cached_key():
    key = make_key("evict")
    operations.sign(key_id=key.key_id, message=b"m", algorithm=PKCS1)
    assert len(material.key_cache) == 1
    services.disable_key(key_id=key.key_id)
    assert len(material.key_cache) == 0


def test_a_key_disabled_by_another_process_cannot_sign_from_the_cache():
    key = make_key("elsewhere")
    operations.sign(key_id=key.key_id, message=b"m", algorithm=PKCS1)
    Key.objects.filter(pk=key.pk).update(state=KeyState.DISABLED)  # not through this process
    with pytest.raises(CmkDisabled):
        operations.sign(key_id=key.key_id, message=b"m", algorithm=PKCS1)


def test_the_cache_is_bounded():
    from kms.keycache import PrivateKeyCache

    cache = PrivateKeyCache(2)
    private = crypto.generate_private_key("ECC_NIST_P256")
    for name in ("a", "b", "c"):
        cache.put(name, b"sealed", private)
    assert len(cache) == 2
    assert cache.get("a", b"sealed") is None
    assert cache.get("c", b"sealed") is private
    assert cache.get("c", b"other-material") is None


def test_listing_filters_by_usage_state_region_and_alias():
    rsa_key = make_key("prod-signer")
    make_key("prod-ecc", key_usage=KeyUsage.ECC, region="ap-shanghai")
    off = make_key("test-signer")
    services.disable_key(key_id=off.key_id)
    assert {k.alias for k in services.list_keys(key_usage=KeyUsage.ECC)} == {"prod-ecc"}
    assert {k.alias for k in services.list_keys(key_state="Disabled")} == {"test-signer"}
    assert {k.alias for k in services.list_keys(region="ap-shanghai")} == {"prod-ecc"}
    assert {k.alias for k in services.list_keys(search_alias="PROD")} == {"prod-signer", "prod-ecc"}
    assert rsa_key.alias in {k.alias for k in services.list_keys()}
    with pytest.raises(InvalidParameter):
        services.list_keys(key_state="Archived")


def test_the_public_key_export_gives_pem_and_base64_der_of_the_same_key():
    import base64

    key = make_key("export")
    info = operations.get_public_key(key_id=key.key_id)
    der = base64.b64decode(info.public_key_der_b64)
    assert serialization.load_der_public_key(der).public_numbers() == _public(key).public_numbers()
    assert info.fingerprint == hashlib.sha256(der).hexdigest()
