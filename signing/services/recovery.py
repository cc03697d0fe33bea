"""Recovery of stalled signing work: rows a dead worker held, claims whose lease ended,
and pending rows that were never handed to a worker (the process died between the commit
and the dispatch).

Every signing process runs ``recover_stalled_signatures`` when it starts (the web process:
``start_serving_worker``, and with the in-process pool after every heartbeat; a Celery
worker: on start and from beat), and ``retry_signatures`` signs the same rows itself.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Q
from django.utils import timezone

from signing.dispatch import dispatch
from signing.models import Signature, SignatureStatus
from signing.services.worker import sign_signatures
from signing.services.workers import dead_workers, release_dead_workers, start_worker

logger = logging.getLogger(__name__)

# Rows per dispatched task: the pool's threads (or the Celery workers) share the work.
BATCH_SIZE = 20


def stalled(now: datetime) -> Q:
    """Rows nobody will finish on their own: a claim whose lease ended (its worker is gone;
    dead workers' claims are released before this is asked), or a pending row no worker
    took within ``SIGNING_RECOVERY_GRACE_SECONDS`` of being recorded or requested.

    Conditions on indexed columns of this table only: cheap enough to ask every lease."""
    grace = now - timedelta(seconds=settings.SIGNING_RECOVERY_GRACE_SECONDS)
    return Q(claimed_until__lt=now) | Q(
        status=SignatureStatus.PENDING,
        next_attempt_at__isnull=True,
        claimed_until__isnull=True,
        updated_at__lt=grace,
    )


def _held_by_dead_workers(now: datetime) -> Q:
    return Q(claimed_by__in=dead_workers(now).values("pk"))


def recover_stalled_signatures(*, now: datetime | None = None) -> list[int]:
    """Take over dead workers' rows and hand every stalled row to the dispatcher; returns
    the ids handed over. Safe to run anywhere, any number of times at once: a row is
    signed by whichever worker claims it first.

    The in-process pool runs this after every heartbeat: when nothing is stale it costs
    one query (stalled rows and dead workers' rows together). Dead workers are released
    only when they hold something; one that holds nothing is forgotten by the next
    ``retry_signatures``, backfill or recovery that has work."""
    now = now or timezone.now()
    ids = list(
        Signature.objects.filter(stalled(now) | _held_by_dead_workers(now))
        .order_by("id")
        .values_list("id", flat=True)
    )
    if not ids:
        return []
    release_dead_workers(now)
    for start in range(0, len(ids), BATCH_SIZE):
        dispatch(sign_signatures, ids[start : start + BATCH_SIZE])
    logger.warning("recovering %s stalled signature(s)", len(ids))
    return ids


_serving_pid: int | None = None


def start_serving_worker(**kwargs: Any) -> None:
    """When a web process starts serving (``SERVING_STARTED_HOOKS``), and on each request
    until it worked (``request_started``: a process forked after the hook ran, a database
    that was away at start): register the process as a signing worker (its request
    threads and pool sign) and recover what dead workers left; with the in-process pool,
    recover again after every heartbeat (no beat schedules it). Inline dispatch (one-shot
    callers, the test suite) registers nothing."""
    global _serving_pid
    if _serving_pid == os.getpid() or settings.SIGNING_DISPATCH == "inline":
        return
    periodic = recover_stalled_signatures if settings.SIGNING_DISPATCH == "thread" else None
    try:
        if start_worker("web", every_beat=periodic) is None:
            return
    except DatabaseError:
        logger.warning("could not register the signing worker; retrying on the next request")
        return
    _serving_pid = os.getpid()
    if settings.SIGNING_DISPATCH == "celery":
        # Only queries and sends "sign these rows" tasks: the workers do the signing.
        recover_stalled_signatures()
    else:
        dispatch(recover_stalled_signatures)
