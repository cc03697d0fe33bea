"""The Celery application: ``celery -A config worker`` and ``celery -A config beat``.

Its settings are the ``CELERY_*`` Django settings (config/settings.py); the tasks live in
the apps' ``tasks`` modules (``signing.tasks``, ``kms.tasks``), found by name once Django
has loaded the apps, so this base module imports none of them.
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("signet")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
