"""The task engine's parts, each against the real thing: the settings a fresh process
computes, tasks sent to a real Redis (and read back from it), a real ``celery beat``
process, and what each task does on a real registry with the local KMS.

The worker itself is exercised end to end in ``test_celery_worker.py``.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from config.celery import app
from kms.models import Key, KeyUsage
from kms.services.states import disable_key, enable_key, schedule_key_deletion
from kms.tasks import purge_deleted_keys
from signing.dispatch import TASKS, dispatch
from signing.models import Signature, SignatureStatus
from signing.services.cleanups import run_cleanups
from signing.services.worker import sign_signatures
from signing.tasks import recover_stale, retry_due
from tests.factories import make_key
from tests.signing.conftest import REPOSITORY, sig_layers
from tests.support.celery_worker import Broker, use_broker
from tests.support.settings_process import print_setting

# --- settings -------------------------------------------------------------------------------

# The real settings module (not the test settings, which always sign inline), in
# development mode so no production secret is needed, without any .env file.
BARE = {
    "DJANGO_SETTINGS_MODULE": "config.settings",
    "DEBUG": "1",
    "SIGNET_ENV_FILE": "/nonexistent",
    "CELERY_BROKER_URL": "",
    "SIGNING_DISPATCH": "",
}


def _setting(expression: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**BARE, **env}
    if not environment["SIGNING_DISPATCH"]:
        environment.pop("SIGNING_DISPATCH")
    return print_setting(expression, **environment)


def test_without_a_broker_signing_stays_in_process():
    result = _setting("settings.SIGNING_DISPATCH")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "thread"


def test_with_a_broker_signing_goes_to_celery_workers_by_default():
    result = _setting("settings.SIGNING_DISPATCH", CELERY_BROKER_URL="redis://127.0.0.1:6379/0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "celery"


def test_celery_dispatch_without_a_broker_stops_the_process_naming_the_variable():
    result = _setting("settings.SIGNING_DISPATCH", SIGNING_DISPATCH="celery")
    assert result.returncode != 0
    assert "SIGNING_DISPATCH=celery needs CELERY_BROKER_URL" in result.stderr


def test_a_visibility_timeout_shorter_than_the_task_time_limit_is_refused():
    result = _setting(
        "settings.CELERY_BROKER_TRANSPORT_OPTIONS",
        CELERY_TASK_TIME_LIMIT="900",
        CELERY_VISIBILITY_TIMEOUT="600",
    )
    assert result.returncode != 0
    assert "CELERY_VISIBILITY_TIMEOUT must be longer than CELERY_TASK_TIME_LIMIT" in result.stderr


def test_the_periodic_intervals_come_from_the_environment():
    result = _setting(
        "{n: (e['task'], e['schedule']) for n, e in settings.CELERY_BEAT_SCHEDULE.items()}",
        SIGNING_RETRY_INTERVAL_SECONDS="7",
        SIGNING_RECOVERY_INTERVAL_SECONDS="3",
        KMS_PURGE_INTERVAL_SECONDS="600",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == repr(
        {
            "retry-due-signatures": ("signing.tasks.retry_due", 7),
            "recover-stalled-signatures": ("signing.tasks.recover_stale", 3),
            "purge-deleted-keys": ("kms.tasks.purge_deleted_keys", 600),
        }
    )


def test_the_celery_app_takes_the_safe_delivery_settings():
    conf = app.conf
    assert (conf.task_acks_late, conf.task_reject_on_worker_lost) == (True, True)
    assert conf.worker_prefetch_multiplier == 1
    assert (conf.task_serializer, list(conf.accept_content)) == ("json", ["json"])
    assert conf.task_time_limit == 600
    assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit
    assert conf.broker_connection_retry_on_startup is True


def test_every_dispatched_service_function_has_a_registered_task():
    app.loader.import_default_modules()
    for function in (sign_signatures, run_cleanups):
        name = TASKS[f"{function.__module__}.{function.__qualname__}"]
        assert name in app.tasks, name
    for entry in app.conf.beat_schedule.values():
        assert entry["task"] in app.tasks, entry["task"]


# --- dispatch sends tasks to the broker -----------------------------------------------------


def _messages(broker: Broker) -> list[tuple[str, list]]:
    """(task name, positional arguments) of each message waiting in the queue, oldest
    first, as a worker would decode them."""
    with broker.client() as client:
        raw = client.lrange(broker.queue, 0, -1)
    found = []
    for item in reversed(raw):  # kombu pushes on the left, workers pop on the right
        message = json.loads(item)
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        found.append((message["headers"]["task"], args))
    return found


def test_dispatch_sends_the_row_ids_after_commit_in_batches(
    db, celery_broker, settings, django_capture_on_commit_callbacks
):
    settings.SIGNING_TASK_BATCH_SIZE = 50
    ids = list(range(1, 121))

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        dispatch(sign_signatures, ids)
        dispatch(run_cleanups, [7, 8])
        assert celery_broker.waiting() == 0, "sent before the commit"

    assert len(callbacks) == 2
    assert _messages(celery_broker) == [
        ("signing.tasks.sign_signatures", [ids[:50]]),
        ("signing.tasks.sign_signatures", [ids[50:100]]),
        ("signing.tasks.sign_signatures", [ids[100:]]),
        ("signing.tasks.remove_artifacts", [[7, 8]]),
    ]


def test_a_broker_that_is_down_does_not_fail_the_caller(
    db, celery_broker, django_capture_on_commit_callbacks, caplog
):
    use_broker("redis://127.0.0.1:9/0")  # nothing listens there
    caplog.set_level(logging.ERROR, logger="signing.dispatch")
    started = time.monotonic()

    with django_capture_on_commit_callbacks(execute=True):
        dispatch(sign_signatures, [1, 2])

    assert time.monotonic() - started < 10
    assert "recovery will pick the rows up" in caplog.text


# --- celery beat sends the periodic work ----------------------------------------------------


def test_celery_beat_sends_retry_recovery_and_purge_on_their_intervals(
    celery_broker, tmp_path: Path
):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings_test",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        "CELERY_BROKER_URL": celery_broker.url,
        "CELERY_TASK_DEFAULT_QUEUE": celery_broker.queue,
        "CELERY_BEAT_SCHEDULE_FILENAME": str(tmp_path / "beat-schedule"),
        "SIGNING_RETRY_INTERVAL_SECONDS": "1",
        "SIGNING_RECOVERY_INTERVAL_SECONDS": "1",
        "KMS_PURGE_INTERVAL_SECONDS": "1",
    }
    log = tmp_path / "beat.log"
    with log.open("wb") as out:
        beat = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "beat", "--loglevel", "INFO"],
            cwd=env["PYTHONPATH"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    wanted = {
        "signing.tasks.retry_due",
        "signing.tasks.recover_stale",
        "kms.tasks.purge_deleted_keys",
    }
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if wanted <= {name for name, _ in _messages(celery_broker)}:
                break
            time.sleep(0.2)
    finally:
        beat.terminate()
        beat.wait(timeout=30)
    sent = {name for name, _ in _messages(celery_broker)}
    assert wanted <= sent, f"sent {sent}\n{log.read_text()[-3000:]}"


# --- what the periodic tasks do -------------------------------------------------------------


def _make_stalled(digest: str, **fields) -> None:
    Signature.objects.filter(manifest__digest=digest).update(
        status=SignatureStatus.PENDING, **fields
    )


@pytest.mark.registry_server
@pytest.mark.django_db(transaction=True)
def test_recover_stale_signs_rows_whose_claim_lapsed_or_that_nobody_took(
    policy, registry, push_image_event
):
    now = timezone.now()
    lapsed = push_image_event(tag="lapsed", seed="a").digest
    forgotten = push_image_event(tag="forgotten", seed="b").digest
    held = push_image_event(tag="held", seed="c").digest
    fresh = push_image_event(tag="fresh", seed="d").digest
    _make_stalled(lapsed, claimed_until=now - timedelta(seconds=1))
    _make_stalled(forgotten, claimed_until=None, updated_at=now - timedelta(minutes=10))
    _make_stalled(held, claimed_until=now + timedelta(minutes=5))
    _make_stalled(fresh, claimed_until=None, updated_at=now)

    result = recover_stale()

    assert result == {"recovered": 2}
    status = dict(Signature.objects.values_list("manifest__digest", "status"))
    assert status[lapsed] == status[forgotten] == SignatureStatus.SIGNED
    assert status[held] == status[fresh] == SignatureStatus.PENDING
    assert len(sig_layers(registry, REPOSITORY, lapsed)) == 1


@pytest.mark.registry_server
@pytest.mark.django_db(transaction=True)
def test_retry_due_signs_a_failed_row_whose_backoff_has_passed(
    policy, key, registry, push_image_event
):
    disable_key(key_id=str(key.key_id))
    digest = push_image_event(tag="v1").digest
    assert Signature.objects.get().status == SignatureStatus.FAILED
    enable_key(key_id=str(key.key_id))
    Signature.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))

    result = retry_due()

    assert result == {"signed": 1, "failed": 0, "skipped": 0}
    assert Signature.objects.get().status == SignatureStatus.SIGNED
    assert len(sig_layers(registry, REPOSITORY, digest)) == 1


def test_purge_deleted_keys_destroys_only_keys_whose_date_has_passed(db):
    due, future = (make_key(alias, key_usage=KeyUsage.ECC) for alias in ("due", "future"))
    for key in (due, future):
        disable_key(key_id=str(key.key_id))
        schedule_key_deletion(key_id=str(key.key_id), pending_window_in_days=7)
    Key.objects.filter(pk=due.pk).update(deletion_date=timezone.now() - timedelta(minutes=1))

    result = purge_deleted_keys()

    assert result == {"destroyed": 1, "skipped": 0}
    assert list(Key.objects.values_list("alias", flat=True)) == ["future"]
