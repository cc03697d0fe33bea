"""Long-running signing work beside other workers and writers, in one process (threads).

- The end of a backfill: rows another worker holds are waited for a bounded time, taken
  over when their worker lets go, and an image someone else signed counts as signed.
- ``run_cleanups`` pages its queue by primary key: on SQLite a read kept open across its
  writes failed with "database is locked" as soon as another connection committed.

The process-level scenarios (backfills as separate OS processes) are in
test_backfill_processes.py.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connections
from django.utils import timezone

from registry.models import Manifest, Namespace
from signing import services
from signing.models import ArtifactCleanup, CleanupReason, Signature, SignatureStatus
from tests.signing.conftest import layer_fingerprints

pytestmark = [
    pytest.mark.registry_server,
    pytest.mark.django_db(transaction=True),
]


def held_row(policy, manifest: Manifest, *, seconds: float) -> Signature:
    """A row another worker has claimed (its lease ends in ``seconds``)."""
    return Signature.objects.create(
        policy=policy,
        manifest=manifest,
        trigger="backfill",
        claimed_until=timezone.now() + timedelta(seconds=seconds),
    )


def backfill(*args: str) -> tuple[str, float]:
    out = StringIO()
    started = time.monotonic()
    call_command(
        "backfill_signatures",
        "--instance",
        "signet",
        "--batch-size",
        "1",
        *args,
        stdout=out,
        stderr=StringIO(),
    )
    return out.getvalue(), time.monotonic() - started


def test_a_row_a_live_worker_holds_is_waited_for_a_bounded_time_and_left_to_it(
    three_images, policy, registry, key
):
    row = held_row(policy, three_images[0], seconds=300)

    out, elapsed = backfill("--wait", "0.5")

    assert elapsed < 10
    assert out.splitlines()[-1].endswith(
        ": 2 signed, 0 already signed, 0 failed, 0 skipped (no policy), "
        "1 taken by another worker, 1 still being signed by another worker."
    ), out
    row.refresh_from_db()
    assert (row.status, row.attempts) == (SignatureStatus.PENDING, 0)  # not taken from it
    assert layer_fingerprints(registry, "team/app", three_images[0].digest) == []
    for manifest in three_images[1:]:
        assert layer_fingerprints(registry, "team/app", manifest.digest) == [
            key.public_key_fingerprint
        ]


def test_a_row_whose_worker_let_go_is_taken_over_and_signed(three_images, policy, registry, key):
    row = held_row(policy, three_images[0], seconds=1)  # its worker stopped: the lease lapses

    out, elapsed = backfill("--wait", "30")

    assert elapsed < 15
    assert ": 3 signed, 0 already signed, 0 failed" in out.splitlines()[-1], out
    assert "still being signed" not in out
    row.refresh_from_db()
    assert (row.status, row.attempts) == (SignatureStatus.SIGNED, 1)
    assert layer_fingerprints(registry, "team/app", three_images[0].digest) == [
        key.public_key_fingerprint
    ]


def test_an_image_another_worker_signs_meanwhile_counts_as_signed(
    three_images, policy, registry, key
):
    row = held_row(policy, three_images[0], seconds=300)

    def other_worker() -> None:
        try:
            time.sleep(0.5)
            # It finishes: releases its claim and signs (whichever of the two claims first
            # signs; the other skips).
            Signature.objects.filter(pk=row.pk).update(claimed_until=None)
            services.sign_signatures([row.pk])
        finally:
            connections.close_all()

    worker = threading.Thread(target=other_worker)
    worker.start()
    out, _ = backfill("--wait", "30")
    # The verdict is on the image's final state: the backfill returned once it was signed.
    row.refresh_from_db()
    ended_as = row.status
    worker.join(timeout=30)

    assert ended_as == SignatureStatus.SIGNED

    assert " 0 failed, " in out.splitlines()[-1], out
    assert "still being signed" not in out
    assert set(Signature.objects.values_list("status", "attempts")) == {(SignatureStatus.SIGNED, 1)}
    for manifest in three_images:
        assert layer_fingerprints(registry, "team/app", manifest.digest) == [
            key.public_key_fingerprint
        ]


def test_queued_artifact_removals_finish_while_another_connection_keeps_writing(instance) -> None:
    # More than one page (200): the old loop kept its read open across the removals.
    ArtifactCleanup.objects.bulk_create(
        ArtifactCleanup(
            instance=instance,
            repository="team/app",
            manifest_digest=f"sha256:{n:064x}",
            reason=CleanupReason.POLICY_DELETED,
        )
        for n in range(230)
    )
    stop = threading.Event()
    written: list[int] = []

    def writer() -> None:
        try:
            while not stop.is_set():
                Namespace.objects.create(instance=instance, name=f"writer{len(written)}")
                written.append(1)
                time.sleep(0.01)
        finally:
            connections.close_all()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        result = services.run_cleanups()
    finally:
        stop.set()
        thread.join(timeout=30)

    assert result == (230, 0)
    assert ArtifactCleanup.objects.count() == 0
    assert len(written) > 5  # the writes really overlapped the removals
