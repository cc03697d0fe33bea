"""Celery tasks of the KMS app, run by ``celery -A config worker`` on celery beat's
schedule (``CELERY_BEAT_SCHEDULE``)."""

from __future__ import annotations

import logging

from config.celery import app
from kms.services.purge import purge_deleted_keys as purge

logger = logging.getLogger(__name__)


@app.task(name="kms.tasks.purge_deleted_keys")
def purge_deleted_keys() -> dict[str, int]:
    """What ``manage.py purge_deleted_keys`` does: destroy keys whose deletion date has
    passed; keys a signing policy still uses are left (and logged)."""
    skipped: list = []
    destroyed = purge(skipped=skipped)
    for error in skipped:
        logger.warning("key not destroyed: %s", error.message)
    return {"destroyed": len(destroyed), "skipped": len(skipped)}
