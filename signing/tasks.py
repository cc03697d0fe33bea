"""Celery tasks of the signing app: thin callers of the signing services, run by
``celery -A config worker``. Sent after commit by ``signing.dispatch`` (the row ids as
arguments) or by celery beat (``CELERY_BEAT_SCHEDULE``). Each is safe to run twice: a
task is redelivered when its worker dies (acks late), and the row claim lets one worker
sign an image once."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery.signals import worker_ready
from django.conf import settings
from django.db import DatabaseError

from config.celery import app
from signing import selectors
from signing.dispatch import dispatch
from signing.services import cleanups, recovery, requests, worker, workers

logger = logging.getLogger(__name__)

# Rows the periodic retry signs in one run; the rest waits for the next run.
RETRY_BATCH = 200


# A task that met an unreachable database is sent again this many seconds later (the
# webhook's Retry-After), up to DATABASE_RETRIES times (10 minutes); beat's recovery after.
DATABASE_RETRY_SECONDS = 5
DATABASE_RETRIES = 120


@app.task(name="signing.tasks.sign_signatures", bind=True, max_retries=DATABASE_RETRIES)
def sign_signatures(self: Any, ids: list[int]) -> dict[str, Any]:
    """Sign these rows (and the children of any index among them).

    The pass records what it can and logs a database error per row; rows it could not
    claim then stay pending with no claim, and nothing but beat's recovery would take
    them: they are sent again, as is the whole task when the database is away even for
    that question. (Claims it could not record: ``_hand_back_claims``.)"""
    try:
        with _working():
            _register_worker()
            outcome = worker.sign_signatures(ids)
        # A database error counts as a failure: no question asked when none happened.
        unclaimed = selectors.never_claimed(ids) if outcome.failed else []
    except DatabaseError as exc:
        raise self.retry(countdown=DATABASE_RETRY_SECONDS, exc=exc) from exc
    if unclaimed:
        logger.warning("%d row(s) could not be claimed; sending them again", len(unclaimed))
        raise self.retry(args=[unclaimed], countdown=DATABASE_RETRY_SECONDS)
    return {"signed": outcome.signed, "failed": outcome.failed, "skipped": outcome.skipped}


@app.task(name="signing.tasks.remove_artifacts")
def remove_artifacts(ids: list[int]) -> dict[str, int]:
    """Carry out these queued signature-artifact removals."""
    with _working():
        _register_worker()
        done, failed = cleanups.run_cleanups(ids)
    return {"done": done, "failed": failed}


@app.task(name="signing.tasks.retry_due")
def retry_due() -> dict[str, Any]:
    """What ``manage.py retry_signatures`` does: failed rows whose backoff has passed,
    unfinished work, and queued artifact removals."""
    with _working():
        _register_worker()
        outcome = requests.retry_signatures(limit=RETRY_BATCH)
    return {"signed": outcome.signed, "failed": outcome.failed, "skipped": outcome.skipped}


@app.task(name="signing.tasks.recover_stale")
def recover_stale() -> dict[str, int]:
    """Hand rows no live worker is signing back to the workers."""
    with _working():
        _register_worker()
        ids = recovery.recover_stalled_signatures()
    if ids:
        logger.warning("recovered %d stalled signature(s): %s", len(ids), ids[:20])
    return {"recovered": len(ids)}


def _register_worker() -> None:
    """Register this pool process as a signing worker (heartbeat, short claims) the first
    time it runs a task; idempotent, and a forked pool process registers its own. Done
    here rather than at process start so it runs after Celery has given the child its own
    database connection."""
    workers.start_worker("celery", every_beat=_hand_back_claims)


# Tasks this process is running (one in a prefork child; more with a thread pool): only
# with none running are the claims it holds certainly left behind.
_running = 0
_running_lock = threading.Lock()


@contextmanager
def _working() -> Iterator[None]:
    global _running
    with _running_lock:
        _running += 1
    try:
        yield
    finally:
        with _running_lock:
            _running -= 1


def _hand_back_claims() -> None:
    """After each heartbeat, while this process runs no task: release the claims it still
    holds and send those rows to be signed again. A database error between the claim and
    the record leaves such a claim behind, and the heartbeat would renew it for ever."""
    try:
        with _running_lock:
            if _running:
                return
            released = workers.release_own_claims()
    except DatabaseError:
        return  # the next heartbeat tries again
    if released:
        logger.warning("handing back %d claim(s) left by a database error", len(released))
        dispatch(worker.sign_signatures, released)


@worker_ready.connect
def _recover_on_start(**kwargs: Any) -> None:
    """A worker that starts takes over what dead workers left, without waiting for beat:
    at once, and again as soon as everything workers killed before it started held can be
    taken. A restart after a crash comes sooner than that: a dead worker looks alive for
    a lease after its last heartbeat (its claims run until then), and the rows it had
    taken but not claimed are not stalled before the grace has passed. Beat may run 15 s
    apart, or not at all; the second run bounds the wait whatever it does. It is sent when
    due (a timer in this process), not as a countdown task: the broker would hold that one
    unacknowledged on this worker for 16 s, and lose it for 20 minutes if it dies."""
    _send_recover_stale()
    timer = threading.Timer(_until_the_dead_lapse(), _send_recover_stale)
    timer.daemon = True
    timer.start()


def _send_recover_stale() -> None:
    try:
        app.send_task("signing.tasks.recover_stale", queue=settings.CELERY_TASK_DEFAULT_QUEUE)
    except Exception:  # beat, or the next worker to start, recovers instead
        logger.exception("could not send the recovery task")


# When this process started (the module is imported while the worker boots): any worker
# killed before this start has its last heartbeat, and its taken rows' last update, before.
_STARTED = time.monotonic()


def _until_the_dead_lapse() -> float:
    """Seconds from now until every claim and taken row of workers killed before this
    process started is recoverable (a second of margin for the database's clock)."""
    settled = max(settings.SIGNING_WORKER_LEASE_SECONDS, settings.SIGNING_RECOVERY_GRACE_SECONDS)
    return max(settled + 1.0 - (time.monotonic() - _STARTED), 0.0)
