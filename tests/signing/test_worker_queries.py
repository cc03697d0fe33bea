"""The database queries of the worker's batch path, counted: signing more images in one
batch costs no more queries (the claim, the KMS key and grant, the recording are per page
or per batch, never per image), so an N+1 cannot come back unnoticed. The registry and
the KMS are real; the counts hold on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from kms import services as kms_services
from kms.services import operations
from registry.models import Manifest
from signing import services
from signing.models import Signature, SignatureStatus, SigningPolicy, Trigger
from signing.services import worker
from signing.services.worker import ensure_pending, sign_signatures
from tests.signing.conftest import POLICY_NAME, REPOSITORY

# Statements of one batch whatever its size (within a claim page): the claim (read and
# lock, update), the KMS key and grant, the recording (update, queued removals). The
# transactions' BEGIN/COMMIT (SAVEPOINT/RELEASE inside the test's transaction) are not
# counted: the connection may or may not report them.
BATCH_STATEMENTS = 6
_TRANSACTION = ("SAVEPOINT", "RELEASE", "BEGIN", "COMMIT", "ROLLBACK")


@pytest.fixture(autouse=True)
def no_refresh_within_the_test(monkeypatch):
    """The KMS batch's one-second re-read and the recorder's one-second flush are timed:
    pushed out of the test's way, so the counts below do not depend on the machine's speed."""
    monkeypatch.setattr(operations, "BATCH_SECONDS", 600.0)
    monkeypatch.setattr(worker._Unrecorded, "SECONDS", 600.0)


@pytest.fixture
def pending(namespace, key, authorized, push_image_event):
    """``pending(n)``: n more pushed images (recorded before the policy existed, so none
    was signed on push) with pending rows under the namespace's policy; their ids."""
    pushed: list[str] = []

    def make(count: int) -> list[int]:
        digests = [
            push_image_event(tag=f"q{len(pushed) + n}", seed=f"queries-{len(pushed) + n}").digest
            for n in range(count)
        ]
        pushed.extend(digests)
        policy = SigningPolicy.objects.filter(namespace=namespace).first()
        if policy is None:
            policy = services.create_policy(namespace=namespace, name=POLICY_NAME, key=key).policy
        manifests = Manifest.objects.filter(digest__in=digests, repository__name=REPOSITORY)
        with transaction.atomic():
            return ensure_pending(
                [(policy, manifest) for manifest in manifests], trigger=Trigger.BACKFILL, actor=None
            )

    return make


def _signed_with_queries(ids: list[int]) -> int:
    """Sign the rows in one batch; the statements it ran."""
    with CaptureQueriesContext(connection) as queries:
        outcome = sign_signatures(ids)
    assert outcome.signed == len(ids), outcome
    return sum(1 for q in queries if not q["sql"].lstrip().upper().startswith(_TRANSACTION))


def test_signing_more_images_in_a_batch_costs_no_more_queries(pending):
    two = _signed_with_queries(pending(2))
    eight = _signed_with_queries(pending(8))

    assert eight == two, f"{eight} queries for 8 images, {two} for 2: a query per image"
    assert eight <= BATCH_STATEMENTS
    assert Signature.objects.filter(status=SignatureStatus.SIGNED).count() == 10


def test_a_key_disabled_before_a_batch_fails_its_rows_and_signs_nothing(pending, key):
    ids = pending(3)
    kms_services.disable_key(key_id=str(key.key_id))

    outcome = sign_signatures(ids)

    assert (outcome.signed, outcome.failed) == (0, 3)
    assert set(Signature.objects.filter(pk__in=ids).values_list("status", "failure_code")) == {
        (SignatureStatus.FAILED, "ResourceUnavailable.CmkDisabled")
    }
