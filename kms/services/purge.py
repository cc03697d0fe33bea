"""Destroying keys whose deletion date has passed (``manage.py purge_deleted_keys``)."""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models import ProtectedError
from django.utils import timezone

from audit import services as audit
from kms.errors import KeyInUse
from kms.models import Key, KeyState
from kms.selectors import key_queryset
from kms.services.material import key_cache

logger = logging.getLogger(__name__)


def purge_deleted_keys(
    *, now=None, dry_run: bool = False, skipped: list | None = None
) -> list[Key]:
    """Destroy every key whose deletion date has passed. Returns the keys destroyed.

    Keys something still protects (a signing policy) are left in place and a
    ``KeyInUse`` error for each is appended to ``skipped``.
    """
    skipped = skipped if skipped is not None else []
    now = now or timezone.now()
    due = list(key_queryset().filter(state=KeyState.PENDING_DELETE, deletion_date__lte=now))
    if dry_run:
        return due
    purged = []
    for candidate in due:
        with transaction.atomic():
            key = (
                Key.objects.select_for_update()
                .filter(
                    key_id=candidate.key_id, state=KeyState.PENDING_DELETE, deletion_date__lte=now
                )
                .first()
            )
            if key is None:
                continue  # cancelled meanwhile
            try:
                with transaction.atomic():
                    key.delete()
            except ProtectedError as exc:
                users = ", ".join(sorted({str(obj) for obj in exc.protected_objects}))
                logger.warning(
                    "kms key not purged key_id=%s: still referenced by %s", key.key_id, users
                )
                skipped.append(
                    KeyInUse(
                        f"Key {key.alias} ({key.key_id}) is still used by {users}; not destroyed.",
                        key_id=str(key.key_id),
                    )
                )
                continue
            audit.record(
                "kms.key.purged",
                obj=candidate,
                details={"alias": candidate.alias, "deletion_date": candidate.deletion_date},
            )
        key_cache.evict(str(candidate.key_id))
        logger.info("kms key purged key_id=%s alias=%s", candidate.key_id, candidate.alias)
        purged.append(candidate)
    return purged
