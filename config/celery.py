"""The Celery application: ``celery -A config worker`` and ``celery -A config beat``.

What the environment sets are the ``CELERY_*`` Django settings (config/settings.py); how
tasks are delivered is fixed here, whatever the environment says. The tasks live in
the apps' ``tasks`` modules (``signing.tasks``, ``kms.tasks``), found by name once Django
has loaded the apps, so this base module imports none of them.
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("signet")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    # JSON only: a task's arguments are row ids, and nothing else is ever unpickled.
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    # The database is where results live (the rows); no result backend.
    task_ignore_result=True,
    # A task is acknowledged once done, and given back to the broker if its worker dies: it
    # may then run twice, which the row claim makes harmless (an image is signed once).
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    # Each worker process reserves one task at a time: the others stay free for idle workers.
    worker_prefetch_multiplier=1,
    # A worker started before the broker waits for it; a worker that loses the broker gives
    # its running tasks back (they are redelivered) instead of finishing them unacknowledged.
    broker_connection_retry_on_startup=True,
    worker_cancel_long_running_tasks_on_connection_loss=True,
    # Sending a task after commit must not hold the webhook long when the broker is down:
    # the rows are durable, and the recovery task hands them to a worker later.
    task_publish_retry_policy={
        "max_retries": 2,
        "interval_start": 0,
        "interval_step": 0.2,
        "interval_max": 0.5,
    },
    # Log lines keep Django's LOGGING format.
    worker_hijack_root_logger=False,
)
app.autodiscover_tasks()
