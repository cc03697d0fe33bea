"""Signing workers the database knows: registration, heartbeat, and the end of dead ones.

A process that signs (the web process's thread pool, a Celery worker, a backfill, the
retry job) registers one ``Worker`` row and renews its heartbeat from a background thread
every ``SIGNING_WORKER_HEARTBEAT_SECONDS``; the same beat extends the claims it holds.
A worker whose heartbeat is older than ``SIGNING_WORKER_LEASE_SECONDS`` is dead: whoever
looks next (recovery, ``retry_signatures``, a backfill) releases its claims and deletes it,
so a killed process holds its rows for one lease, not for minutes.

Registration must be visible to other processes, so it is skipped inside an open
transaction (a caller's or a test's), and when ``SIGNING_REGISTER_WORKERS`` is off:
signing there claims without a worker, with the long ``CLAIM_SECONDS`` lease.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, IntegrityError, close_old_connections, connection, connections
from django.utils import timezone

from signing.models import Signature, Worker

logger = logging.getLogger(__name__)


@dataclass
class _Registration:
    worker_id: int
    pid: int
    stop: threading.Event
    thread: threading.Thread


_lock = threading.Lock()
_current: _Registration | None = None


def lease() -> timedelta:
    return timedelta(seconds=settings.SIGNING_WORKER_LEASE_SECONDS)


def current_worker_id() -> int | None:
    """This process's registered worker (None when it registered none, or forked since)."""
    registration = _current
    if registration is None or registration.pid != os.getpid():
        return None
    return registration.worker_id


def start_worker(kind: str, *, every_beat: Callable[[], object] | None = None) -> int | None:
    """Register this process as a signing worker and start its heartbeat; idempotent.

    Returns the worker id, or None when not registered (see the module docstring). A forked
    child (Celery's prefork pool) registers its own worker. ``every_beat`` runs in the
    heartbeat thread after each beat (the web process's periodic recovery).
    """
    global _current
    if not settings.SIGNING_REGISTER_WORKERS or connection.in_atomic_block:
        return None
    with _lock:
        if (worker_id := current_worker_id()) is not None:
            return worker_id
        now = timezone.now()
        worker = Worker.objects.create(
            kind=kind[:30],
            hostname=socket.gethostname()[:255],
            pid=os.getpid(),
            started_at=now,
            heartbeat_at=now,
        )
        stop = threading.Event()
        thread = threading.Thread(
            target=_beat,
            args=(worker, stop, every_beat),
            name="signet-worker-heartbeat",
            daemon=True,
        )
        _current = _Registration(worker.pk, os.getpid(), stop, thread)
        thread.start()
    logger.info("signing worker %s registered (%s)", worker.pk, worker)
    return worker.pk


def stop_worker() -> None:
    """Stop the heartbeat and leave: release this worker's claims, delete its row."""
    global _current
    with _lock:
        registration = _current
        if registration is None or registration.pid != os.getpid():
            return
        _current = None
    registration.stop.set()
    registration.thread.join(timeout=2)
    try:
        _release(Signature.objects.filter(claimed_by_id=registration.worker_id), timezone.now())
        Worker.objects.filter(pk=registration.worker_id).delete()
    except DatabaseError:
        logger.warning("worker %s could not deregister; its lease ends on its own", exc_info=True)


@atexit.register
def _stop_at_exit() -> None:
    stop_worker()


@contextmanager
def worker_running(kind: str) -> Iterator[int | None]:
    """A registered worker for the duration of a one-shot run (a command)."""
    already = current_worker_id() is not None
    worker_id = start_worker(kind)
    try:
        yield worker_id
    finally:
        if not already:
            stop_worker()


def _beat(worker: Worker, stop: threading.Event, every_beat: Callable[[], object] | None) -> None:
    interval = settings.SIGNING_WORKER_HEARTBEAT_SECONDS
    while not stop.wait(interval):
        close_old_connections()
        try:
            heartbeat(worker)
            if every_beat is not None:
                every_beat()
        except DatabaseError:
            # The database is away for a moment: the lease is long enough for a few misses.
            logger.warning("signing worker %s heartbeat failed", worker.pk, exc_info=True)
        finally:
            connections.close_all()


def heartbeat(worker: Worker, now: datetime | None = None) -> None:
    """Renew the worker's lease and the claims it holds. A row that went (another worker
    found us dead after a long pause, or a test flushed the tables) is written back: the
    claims it held were released meanwhile, so nothing is held twice."""
    now = now or timezone.now()
    if not Worker.objects.filter(pk=worker.pk).update(heartbeat_at=now):
        with suppress(IntegrityError):  # written back meanwhile by a racing beat
            Worker.objects.create(
                pk=worker.pk,
                kind=worker.kind,
                hostname=worker.hostname,
                pid=worker.pid,
                started_at=worker.started_at,
                heartbeat_at=now,
            )
    Signature.objects.filter(claimed_by_id=worker.pk, claimed_until__isnull=False).update(
        claimed_until=now + lease()
    )


def dead_workers(now: datetime | None = None):
    """Workers whose heartbeat is older than the lease."""
    now = now or timezone.now()
    return Worker.objects.filter(heartbeat_at__lt=now - lease())


def _release(claims, now: datetime) -> int:
    """End the claims: expired (not cleared), so whoever looks for stalled rows next
    (recovery, ``retry_signatures``, a backfill) takes them at once."""
    return claims.update(claimed_by=None, claimed_until=now - timedelta(seconds=1))


def release_dead_workers(now: datetime | None = None) -> int:
    """Free every row a dead worker holds and forget the worker; how many rows were freed.

    A dead worker that wakes up again (a long pause, not a crash) re-registers from its
    heartbeat; it lost its claims, so a row it was still signing may be signed twice
    (publishing the same layer again is harmless), never lost."""
    now = now or timezone.now()
    dead = list(dead_workers(now).values_list("pk", flat=True))
    if not dead:
        return 0
    freed = _release(Signature.objects.filter(claimed_by_id__in=dead), now)
    Worker.objects.filter(pk__in=dead).delete()
    if freed:
        logger.warning("released %s signature(s) held by dead worker(s) %s", freed, dead)
    return freed


def release_own_claims() -> list[int]:
    """Release every claim this process's worker holds; the ids of the rows released.

    Only for a moment when the process signs nothing (a Celery worker between tasks): a
    claim it holds then is one a database error left behind (the claim was written, the
    result could not be), which its heartbeat would renew for as long as it lives."""
    worker_id = current_worker_id()
    if worker_id is None:
        return []
    held = Signature.objects.filter(claimed_by_id=worker_id)
    ids = list(held.values_list("pk", flat=True))
    if ids:
        _release(held.filter(pk__in=ids), timezone.now())
    return ids
