"""Re-sealing every key under the current master-key version (``manage.py rotate_master_key``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils.module_loading import import_string

from audit import services as audit
from kms import crypto
from kms.errors import MasterKeyError
from kms.models import Key
from kms.services.material import key_cache, master_keyring

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RotationResult:
    resealed: int
    already_current: int
    target_version: int
    # Other sealed material re-sealed by KMS_MASTER_KEY_ROTATION_HOOKS, by hook path.
    others: dict[str, int] | None = None


def rotate_master_key() -> RotationResult:
    """Re-seal every key still sealed under an older master-key version.

    Each key is re-sealed in its own short transaction holding only its row,
    so signing goes on meanwhile: every running process has both versions in
    its keyring. Safe to interrupt and run again.
    """
    keyring = master_keyring()
    target = keyring.current
    resealed = 0
    already = Key.objects.filter(master_key_version=target).count()
    stale_ids = list(
        Key.objects.exclude(master_key_version=target).values_list("key_id", flat=True)
    )
    for key_id in stale_ids:
        with transaction.atomic():
            key = Key.objects.select_for_update().filter(key_id=key_id).first()
            if key is None or key.master_key_version == target:
                continue
            try:
                der = crypto.open_sealed(
                    bytes(key.sealed_private_key),
                    keyring=keyring,
                    key_id=str(key.key_id),
                    version=key.master_key_version,
                )
            except crypto.SealError as exc:
                raise MasterKeyError(str(exc), key_id=str(key.key_id)) from None
            sealed, version = crypto.seal(der, keyring=keyring, key_id=str(key.key_id))
            key.sealed_private_key = sealed
            key.master_key_version = version
            key.save(update_fields=["sealed_private_key", "master_key_version", "updated_at"])
        key_cache.evict(str(key_id))
        resealed += 1
    others = {path: import_string(path)() for path in settings.KMS_MASTER_KEY_ROTATION_HOOKS}
    audit.record(
        "kms.master_key.rotated",
        object_type="kms.master_key",
        object_id=target,
        object_repr=f"master key version {target}",
        details={
            "target_version": target,
            "resealed": resealed,
            "already_current": already,
            "hooks": [{"hook": path, "resealed": count} for path, count in others.items()],
        },
    )
    logger.info("kms master key rotated to version %s: %s keys re-sealed", target, resealed)
    return RotationResult(
        resealed=resealed, already_current=already, target_version=target, others=others
    )
