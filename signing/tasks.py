"""Celery tasks of the signing app: thin callers of the signing services, run by
``celery -A config worker``. Sent after commit by ``signing.dispatch`` (the row ids as
arguments) or by celery beat (``CELERY_BEAT_SCHEDULE``). Each is safe to run twice: a
task is redelivered when its worker dies (acks late), and the row claim lets one worker
sign an image once."""

from __future__ import annotations

import logging
from typing import Any

from config.celery import app
from signing.services import cleanups, recovery, requests, worker

logger = logging.getLogger(__name__)

# Rows the periodic retry signs in one run; the rest waits for the next run.
RETRY_BATCH = 200


@app.task(name="signing.tasks.sign_signatures")
def sign_signatures(ids: list[int]) -> dict[str, Any]:
    """Sign these rows (and the children of any index among them)."""
    outcome = worker.sign_signatures(ids)
    return {"signed": outcome.signed, "failed": outcome.failed, "skipped": outcome.skipped}


@app.task(name="signing.tasks.remove_artifacts")
def remove_artifacts(ids: list[int]) -> dict[str, int]:
    """Carry out these queued signature-artifact removals."""
    done, failed = cleanups.run_cleanups(ids)
    return {"done": done, "failed": failed}


@app.task(name="signing.tasks.retry_due")
def retry_due() -> dict[str, Any]:
    """What ``manage.py retry_signatures`` does: failed rows whose backoff has passed,
    unfinished work, and queued artifact removals."""
    outcome = requests.retry_signatures(limit=RETRY_BATCH)
    return {"signed": outcome.signed, "failed": outcome.failed, "skipped": outcome.skipped}


@app.task(name="signing.tasks.recover_stale")
def recover_stale() -> dict[str, int]:
    """Hand rows no live worker is signing back to the workers."""
    ids = recovery.recover_stalled_signatures()
    if ids:
        logger.warning("recovered %d stalled signature(s): %s", len(ids), ids[:20])
    return {"recovered": len(ids)}
