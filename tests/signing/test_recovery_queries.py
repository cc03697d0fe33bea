"""Recovery runs after every heartbeat of the in-process pool: when nothing is stale it
costs one query, not two; when a dead worker holds rows it still takes them over."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from signing.models import Signature, SignatureStatus, Worker
from signing.services.recovery import recover_stalled_signatures
from tests.signing.conftest import layer_fingerprints, silent_worker

pytestmark = pytest.mark.django_db


def _claimed(policy, manifest, holder: Worker) -> Signature:
    return Signature.objects.create(
        policy=policy,
        manifest=manifest,
        trigger="push",
        attempts=1,
        claimed_by=holder,
        claimed_until=timezone.now() + timedelta(seconds=15),
    )


def test_recovery_with_nothing_stale_costs_one_query(three_images, policy):
    live = silent_worker(silent_for=1)
    _claimed(policy, three_images[0], live)  # a live worker's: not stale
    Signature.objects.create(policy=policy, manifest=three_images[1], trigger="push")  # fresh

    with CaptureQueriesContext(connection) as queries:
        assert recover_stalled_signatures() == []

    assert len(queries) == 1, [q["sql"] for q in queries]


def test_a_dead_worker_holding_nothing_costs_recovery_no_second_query(db):
    silent_worker(silent_for=60)

    with CaptureQueriesContext(connection) as queries:
        assert recover_stalled_signatures() == []

    assert len(queries) == 1, [q["sql"] for q in queries]


@pytest.mark.registry_server
def test_recovery_takes_over_a_dead_workers_rows_before_their_claim_ends(
    three_images, policy, registry, key
):
    dead, live = silent_worker(silent_for=60), silent_worker(silent_for=1)
    orphan = _claimed(policy, three_images[0], dead)
    held = _claimed(policy, three_images[1], live)

    assert recover_stalled_signatures() == [orphan.pk]  # inline dispatch: signed on the spot

    orphan.refresh_from_db()
    held.refresh_from_db()
    assert (orphan.status, orphan.claimed_by_id) == (SignatureStatus.SIGNED, None)
    assert (held.status, held.claimed_by_id) == (SignatureStatus.PENDING, live.pk)
    assert layer_fingerprints(registry, "team/app", three_images[0].digest) == [
        key.public_key_fingerprint
    ]
    assert list(Worker.objects.values_list("pk", flat=True)) == [live.pk]
