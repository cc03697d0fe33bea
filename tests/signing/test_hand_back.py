"""A Celery worker process gives back what a database error left it holding (issue #11,
item 2): claims it wrote but whose result it could not record, which its own heartbeat
would otherwise renew for as long as it lives. The process-level scenario (a database
blip while two workers sign a burst) is test_database_blip.py; this is the mechanism,
fast, on the real registry and the local KMS.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from signing import tasks
from signing.models import Signature, SignatureStatus
from signing.services import workers
from tests.signing.conftest import layer_fingerprints

pytestmark = [
    pytest.mark.registry_server,
    pytest.mark.django_db(transaction=True),
]


@override_settings(
    SIGNING_REGISTER_WORKERS=True,
    SIGNING_WORKER_HEARTBEAT_SECONDS=0.2,
    SIGNING_WORKER_LEASE_SECONDS=1.0,
)
def test_a_claim_a_worker_holds_while_it_runs_no_task_is_handed_back_and_signed(
    three_images, policy, registry, key
):
    tasks._register_worker()  # as the first task of a pool process does
    try:
        worker_id = workers.current_worker_id()
        assert worker_id is not None
        left_behind = Signature.objects.create(
            policy=policy,
            manifest=three_images[0],
            trigger="push",
            attempts=1,
            claimed_by_id=worker_id,
            claimed_until=timezone.now() + timedelta(seconds=1),
        )

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            left_behind.refresh_from_db()
            if left_behind.status == SignatureStatus.SIGNED:
                break
            time.sleep(0.1)
    finally:
        workers.stop_worker()

    # Handed back after a heartbeat and signed (inline dispatch here: a task in production).
    assert (left_behind.status, left_behind.claimed_by_id) == (SignatureStatus.SIGNED, None)
    assert layer_fingerprints(registry, "team/app", three_images[0].digest) == [
        key.public_key_fingerprint
    ]


@override_settings(
    SIGNING_REGISTER_WORKERS=True,
    SIGNING_WORKER_HEARTBEAT_SECONDS=0.2,
    SIGNING_WORKER_LEASE_SECONDS=1.0,
)
def test_a_claim_is_kept_while_the_process_runs_a_task(three_images, policy):
    tasks._register_worker()
    try:
        worker_id = workers.current_worker_id()
        held = Signature.objects.create(
            policy=policy,
            manifest=three_images[0],
            trigger="push",
            attempts=1,
            claimed_by_id=worker_id,
            claimed_until=timezone.now() + timedelta(seconds=1),
        )
        with tasks._working():  # a task signing it right now
            time.sleep(1.5)  # several heartbeats, past the first lease
            held.refresh_from_db()
    finally:
        workers.stop_worker()

    assert held.claimed_by_id == worker_id
    assert held.status == SignatureStatus.PENDING
