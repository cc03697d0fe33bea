"""A key's state: enable, disable, schedule and cancel its deletion (each audited)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from audit import services as audit
from kms.errors import (
    CmkDisabled,
    CmkShouldBeDisabled,
    CmkStateNotSupport,
    InvalidParameter,
    KeyPendingDelete,
)
from kms.models import Key, KeyState
from kms.selectors import get_key
from kms.services.material import key_cache

logger = logging.getLogger(__name__)

MIN_PENDING_WINDOW_DAYS = 7
MAX_PENDING_WINDOW_DAYS = 30


def require_enabled(key: Key) -> None:
    if key.state == KeyState.DISABLED:
        raise CmkDisabled(
            f"Key {key.alias} ({key.key_id}) is disabled; enable it before using it.",
            key_id=str(key.key_id),
        )
    if key.state == KeyState.PENDING_DELETE:
        raise KeyPendingDelete(
            f"Key {key.alias} ({key.key_id}) is pending deletion on "
            f"{key.deletion_date:%Y-%m-%d}; cancel the deletion and enable it to use it.",
            key_id=str(key.key_id),
        )


_AUDIT_STATE_ACTIONS: dict[tuple[str, str], str] = {
    (KeyState.DISABLED, KeyState.PENDING_DELETE): "kms.key.deletion_scheduled",
    (KeyState.PENDING_DELETE, KeyState.DISABLED): "kms.key.deletion_cancelled",
}


def _transition(
    key_id: str, *, allowed_from: Iterable[str], to: str, guards: Iterable = (), **fields
) -> Key:
    with transaction.atomic():
        key = get_key(key_id=key_id, for_update=True)
        if key.state not in allowed_from:
            if key.state == KeyState.PENDING_DELETE:
                raise KeyPendingDelete(
                    f"Key {key.alias} is pending deletion; cancel the deletion first.",
                    key_id=str(key.key_id),
                )
            raise CmkStateNotSupport(
                f"Key {key.alias} is {key.state}; this operation needs it to be "
                f"{' or '.join(allowed_from)}.",
                key_id=str(key.key_id),
                state=key.state,
            )
        # Guards run under the key's row lock: a policy created meanwhile (which locks the
        # key too) is either seen here or sees the new state itself.
        for guard in guards:
            guard(key)
        before = {"state": key.state, **{name: getattr(key, name) for name in fields}}
        key.state = to
        for name, value in fields.items():
            setattr(key, name, value)
        key.save(update_fields=["state", "updated_at", *fields])
        audit.record(
            _AUDIT_STATE_ACTIONS.get((before["state"], to), "kms.key.state_changed"),
            obj=key,
            changes=audit.diff(before, {"state": to, **fields}),
        )
    key_cache.evict(str(key.key_id))
    logger.info("kms key state changed key_id=%s state=%s", key.key_id, to)
    return key


def enable_key(*, key_id: str) -> Key:
    key = get_key(key_id=key_id)
    if key.state == KeyState.ENABLED:
        return key
    return _transition(key_id, allowed_from=[KeyState.DISABLED], to=KeyState.ENABLED)


def disable_key(*, key_id: str) -> Key:
    key = get_key(key_id=key_id)
    if key.state == KeyState.DISABLED:
        return key
    return _transition(key_id, allowed_from=[KeyState.ENABLED], to=KeyState.DISABLED)


def _deletion_guards() -> list:
    return [import_string(path) for path in settings.KMS_KEY_DELETION_GUARDS]


def schedule_key_deletion(*, key_id: str, pending_window_in_days: int) -> Key:
    if (
        isinstance(pending_window_in_days, bool)
        or not isinstance(pending_window_in_days, int)
        or not MIN_PENDING_WINDOW_DAYS <= pending_window_in_days <= MAX_PENDING_WINDOW_DAYS
    ):
        raise InvalidParameter(
            f"PendingWindowInDays must be a whole number from {MIN_PENDING_WINDOW_DAYS} to "
            f"{MAX_PENDING_WINDOW_DAYS}.",
            fields={
                "pending_window_in_days": [
                    f"Must be from {MIN_PENDING_WINDOW_DAYS} to {MAX_PENDING_WINDOW_DAYS} days."
                ]
            },
        )
    key = get_key(key_id=key_id)
    if key.state == KeyState.PENDING_DELETE:
        raise KeyPendingDelete(
            f"Key {key.alias} is already pending deletion on {key.deletion_date:%Y-%m-%d}.",
            key_id=str(key.key_id),
        )
    if key.state == KeyState.ENABLED:
        raise CmkShouldBeDisabled(
            f"Key {key.alias} is Enabled; disable it before scheduling its deletion.",
            key_id=str(key.key_id),
        )
    deletion_date = timezone.now() + timedelta(days=pending_window_in_days)
    return _transition(
        key_id,
        allowed_from=[KeyState.DISABLED],
        to=KeyState.PENDING_DELETE,
        guards=_deletion_guards(),
        deletion_date=deletion_date,
    )


def cancel_key_deletion(*, key_id: str) -> Key:
    return _transition(
        key_id, allowed_from=[KeyState.PENDING_DELETE], to=KeyState.DISABLED, deletion_date=None
    )
