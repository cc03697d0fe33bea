"""A KMS signing batch reads the key and the service grant once, and only for a short time:
throughput without letting a disabled key or a revoked grant go on signing."""

from __future__ import annotations

import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from kms import crypto
from kms import services as kms_services
from kms.clients import LocalKmsClient
from kms.errors import CmkDisabled, KeyPendingDelete, ServiceNotAuthorized
from kms.models import AuthorizedService
from kms.services import operations
from tests.factories import make_key

pytestmark = pytest.mark.django_db

SERVICE = AuthorizedService.REGISTRY_SIGNING
PKCS1 = crypto.RSA_PKCS1_SHA_256


@pytest.fixture
def granted():
    return kms_services.grant_service_authorization(service=SERVICE)


def _verifies(key, message: bytes, signature: bytes) -> bool:
    return operations.verify(
        key_id=str(key.key_id), message=message, signature=signature, algorithm=PKCS1
    )


def _sign(signer, key, n: int) -> bytes:
    return signer.sign(key_id=str(key.key_id), message=f"m{n}".encode(), algorithm=PKCS1)


def test_a_batch_reads_the_key_and_the_grant_once_for_many_signatures(granted):
    key = make_key("batch")
    signer = LocalKmsClient(service=SERVICE).signing_batch()

    with CaptureQueriesContext(connection) as queries:
        signatures = [_sign(signer, key, n) for n in range(20)]

    assert len(queries) == 2, [q["sql"] for q in queries]  # the key, the grant
    assert all(_verifies(key, f"m{n}".encode(), s) for n, s in enumerate(signatures))


def test_signing_without_a_batch_still_reads_both_for_every_signature(granted):
    key = make_key("single")
    client = LocalKmsClient(service=SERVICE)

    with CaptureQueriesContext(connection) as queries:
        for n in range(3):
            _sign(client, key, n)

    assert len(queries) == 6


def test_a_key_disabled_before_a_batch_is_refused_by_it(granted):
    key = make_key("off-before")
    _sign(LocalKmsClient(service=SERVICE).signing_batch(), key, 0)
    kms_services.disable_key(key_id=str(key.key_id))

    with pytest.raises(CmkDisabled):
        _sign(LocalKmsClient(service=SERVICE).signing_batch(), key, 1)


def test_a_grant_revoked_before_a_batch_is_refused_by_it(granted):
    key = make_key("revoked-before")
    _sign(LocalKmsClient(service=SERVICE).signing_batch(), key, 0)
    kms_services.revoke_service_authorization(service=SERVICE)

    with pytest.raises(ServiceNotAuthorized):
        _sign(LocalKmsClient(service=SERVICE).signing_batch(), key, 1)


def test_nothing_a_batch_read_is_kept_for_the_next_batch(granted):
    key = make_key("fresh")
    first = LocalKmsClient(service=SERVICE).signing_batch()
    _sign(first, key, 0)

    with CaptureQueriesContext(connection) as queries:
        _sign(LocalKmsClient(service=SERVICE).signing_batch(), key, 1)

    assert len(queries) == 2  # the next batch reads the key and the grant again


def test_a_key_disabled_during_a_batch_stops_it_within_the_batch_lifetime(granted):
    key = make_key("off-during")
    batch = operations.SigningBatch(on_behalf_of=SERVICE, max_age=0.2)
    batch.sign(key_id=str(key.key_id), message=b"before", algorithm=PKCS1)

    kms_services.disable_key(key_id=str(key.key_id))
    time.sleep(0.25)

    with pytest.raises(CmkDisabled):
        batch.sign(key_id=str(key.key_id), message=b"after", algorithm=PKCS1)


def test_a_key_scheduled_for_deletion_during_a_batch_stops_it_within_its_lifetime(granted):
    key = make_key("deleted-during")
    batch = operations.SigningBatch(on_behalf_of=SERVICE, max_age=0.2)
    batch.sign(key_id=str(key.key_id), message=b"before", algorithm=PKCS1)

    kms_services.disable_key(key_id=str(key.key_id))
    kms_services.schedule_key_deletion(key_id=str(key.key_id), pending_window_in_days=7)
    time.sleep(0.25)

    with pytest.raises(KeyPendingDelete):
        batch.sign(key_id=str(key.key_id), message=b"after", algorithm=PKCS1)


def test_a_grant_revoked_during_a_batch_stops_it_within_the_batch_lifetime(granted):
    key = make_key("revoked-during")
    batch = operations.SigningBatch(on_behalf_of=SERVICE, max_age=0.2)
    batch.sign(key_id=str(key.key_id), message=b"before", algorithm=PKCS1)

    kms_services.revoke_service_authorization(service=SERVICE)
    time.sleep(0.25)

    with pytest.raises(ServiceNotAuthorized):
        batch.sign(key_id=str(key.key_id), message=b"after", algorithm=PKCS1)


def test_a_refused_grant_is_asked_again_not_remembered(granted):
    key = make_key("regranted")
    kms_services.revoke_service_authorization(service=SERVICE)
    batch = operations.SigningBatch(on_behalf_of=SERVICE)
    with pytest.raises(ServiceNotAuthorized):
        batch.sign(key_id=str(key.key_id), message=b"refused", algorithm=PKCS1)

    kms_services.grant_service_authorization(service=SERVICE)

    assert batch.sign(key_id=str(key.key_id), message=b"granted", algorithm=PKCS1)


def test_the_batch_lifetime_is_short():
    assert 0 < operations.BATCH_SECONDS <= 2
