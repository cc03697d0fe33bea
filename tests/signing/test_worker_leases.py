"""Workers the database knows (issue #11, item 2): a dead worker's rows are taken over at
once by ``retry_signatures``, a backfill and recovery; a live worker's are left to it; a
registered worker's heartbeat keeps its claims short and alive; pending rows say how long
they have waited (API, /healthz).

The process-level crash scenario (SIGKILL mid-burst, restart) is test_crash_recovery.py.
"""

from __future__ import annotations

import time
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from registry.models import Manifest
from signing.models import Signature, SignatureStatus, Worker
from signing.services import workers
from signing.services.recovery import recover_stalled_signatures
from tests.signing.conftest import layer_fingerprints, silent_worker

pytestmark = [
    pytest.mark.registry_server,
    pytest.mark.django_db(transaction=True),
]


def claimed_by(policy, manifest: Manifest, holder: Worker) -> Signature:
    """A pending row ``holder`` claimed; the claim still runs for a lease."""
    return Signature.objects.create(
        policy=policy,
        manifest=manifest,
        trigger="push",
        attempts=1,
        claimed_by=holder,
        claimed_until=timezone.now() + timedelta(seconds=15),
    )


def signed_with(registry, manifest: Manifest) -> list[str | None]:
    return layer_fingerprints(registry, "team/app", manifest.digest)


def test_retry_signatures_takes_over_a_dead_workers_rows_at_once_and_leaves_a_live_workers(
    three_images, policy, registry, key
):
    dead, live = silent_worker(silent_for=60), silent_worker(silent_for=1)
    orphan = claimed_by(policy, three_images[0], dead)
    held = claimed_by(policy, three_images[1], live)

    out = StringIO()
    call_command("retry_signatures", stdout=out, stderr=StringIO())

    assert out.getvalue().startswith("Retried 1 signature(s): 1 signed, 0 failed"), out.getvalue()
    orphan.refresh_from_db()
    assert (orphan.status, orphan.claimed_by_id, orphan.attempts) == (
        SignatureStatus.SIGNED,
        None,
        2,
    )
    assert signed_with(registry, three_images[0]) == [key.public_key_fingerprint]
    held.refresh_from_db()
    assert (held.status, held.claimed_by_id) == (SignatureStatus.PENDING, live.pk)
    assert signed_with(registry, three_images[1]) == []
    assert list(Worker.objects.values_list("pk", flat=True)) == [live.pk]  # the dead one went


def test_a_backfill_signs_a_dead_workers_rows_instead_of_counting_them_as_another_workers(
    three_images, policy, registry, key
):
    orphan = claimed_by(policy, three_images[0], silent_worker(silent_for=60))

    out = StringIO()
    started = time.monotonic()
    call_command(
        "backfill_signatures", "--instance", "signet", "--wait", "30", stdout=out, stderr=StringIO()
    )

    assert time.monotonic() - started < 15  # not a wait for the dead worker's claim
    last = out.getvalue().splitlines()[-1]
    assert ": 3 signed, 0 already signed, 0 failed, 0 skipped (no policy)." in last, last
    orphan.refresh_from_db()
    assert orphan.status == SignatureStatus.SIGNED
    for manifest in three_images:
        assert signed_with(registry, manifest) == [key.public_key_fingerprint]


@override_settings(SIGNING_REGISTER_WORKERS=True)
def test_recovery_signs_pending_rows_no_worker_took_and_leaves_fresh_ones(
    three_images, policy, registry, key
):
    long_ago = timezone.now() - timedelta(minutes=1)
    lost = Signature.objects.create(policy=policy, manifest=three_images[0], trigger="push")
    Signature.objects.filter(pk=lost.pk).update(updated_at=long_ago, created_at=long_ago)
    fresh = Signature.objects.create(policy=policy, manifest=three_images[1], trigger="push")

    assert len(recover_stalled_signatures()) == 1  # inline dispatch: signed on the spot

    lost.refresh_from_db()
    fresh.refresh_from_db()
    assert (lost.status, fresh.status) == (SignatureStatus.SIGNED, SignatureStatus.PENDING)
    assert signed_with(registry, three_images[0]) == [key.public_key_fingerprint]


@override_settings(
    SIGNING_REGISTER_WORKERS=True,
    SIGNING_WORKER_HEARTBEAT_SECONDS=0.2,
    SIGNING_WORKER_LEASE_SECONDS=1.0,
)
def test_a_registered_workers_heartbeat_keeps_its_short_claims_and_stopping_releases_them(
    three_images, policy
):
    worker_id = workers.start_worker("test")
    try:
        assert worker_id is not None and workers.current_worker_id() == worker_id
        row = Signature.objects.create(
            policy=policy,
            manifest=three_images[0],
            trigger="push",
            claimed_by_id=worker_id,
            claimed_until=timezone.now() + timedelta(seconds=1),
        )
        time.sleep(2.5)  # past the first lease: only the heartbeat can keep the claim

        row.refresh_from_db()
        assert row.claimed_until > timezone.now()
        assert workers.release_dead_workers() == 0
        assert Worker.objects.get(pk=worker_id).heartbeat_at > timezone.now() - timedelta(seconds=1)
    finally:
        workers.stop_worker()

    row.refresh_from_db()
    assert row.claimed_by_id is None and row.claimed_until < timezone.now()  # free to take
    assert not Worker.objects.filter(pk=worker_id).exists()
    assert workers.current_worker_id() is None


def test_the_api_and_healthz_say_how_long_pending_rows_have_waited(
    three_images, policy, superuser_client, client
):
    waited = timezone.now() - timedelta(seconds=90)
    row = Signature.objects.create(policy=policy, manifest=three_images[0], trigger="push")
    Signature.objects.filter(pk=row.pk).update(created_at=waited)

    body = superuser_client.get(f"/api/v1/signing/signatures/{row.pk}/").json()
    assert body["status"] == "pending"
    assert 90 <= body["waiting_seconds"] < 120
    assert body["pending_since"].startswith(waited.strftime("%Y-%m-%dT%H:%M"))

    health = client.get("/healthz").json()
    assert health["status"] == "ok"
    assert health["signing"]["pending"] == 1
    assert 90 <= health["signing"]["oldest_pending_seconds"] < 120
