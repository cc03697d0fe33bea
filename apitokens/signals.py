"""A changed password revokes the user's API tokens; so does deleting the user (the
cascade would take them without a word in the audit log).

Every way of changing a password ends in saving the user with a new hash in
``password``: the admin's password forms, ``manage.py changepassword``,
``set_password()`` + ``save()``, ``set_unusable_password()`` + ``save()``, an assigned
hash. So the check sits on the user model's save: ``pre_save`` compares the new hash with
the stored one, ``post_save`` revokes (in the same transaction as the save, audited).

One save changes the hash without a new password: Django's hasher upgrade in
``check_password`` (another hasher or more iterations after a Django upgrade), which
saves only ``password`` after clearing ``_password``, replacing a hash the preferred
hasher wants replaced with one of its own. It is left alone, or a Django upgrade would
sign every user's scripts out.

Not covered: ``QuerySet.update(password=...)``, which sends no signal (nothing in Django
or Signet does it).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import get_hasher, identify_hasher, is_password_usable
from django.db.models.signals import post_save, pre_delete, pre_save

from apitokens import services

_CHANGED = "_signet_password_changed"


def _is_hasher_upgrade(user: Any, update_fields: Any, stored: str) -> bool:
    """The save ``check_password`` makes after re-hashing a correct password with the
    preferred hasher: only ``password``, no raw password kept, an old hash that the
    preferred hasher wants replaced, a new one made by it."""
    if user._password is not None or set(update_fields or ()) != {"password"}:
        return False
    if not (is_password_usable(stored) and is_password_usable(user.password)):
        return False
    try:
        old, new, preferred = identify_hasher(stored), identify_hasher(user.password), get_hasher()
    except ValueError:
        return False
    return new.algorithm == preferred.algorithm and (
        old.algorithm != preferred.algorithm or preferred.must_update(stored)
    )


def note_password_change(
    sender: Any, instance: Any, raw: bool = False, update_fields: Any = None, **kwargs: Any
) -> None:
    setattr(instance, _CHANGED, False)
    if raw or instance.pk is None or instance._state.adding:
        return
    if update_fields is not None and "password" not in update_fields:
        return  # e.g. the last_login update at each sign-in
    stored = (
        sender._default_manager.using(kwargs.get("using"))
        .filter(pk=instance.pk)
        .values_list("password", flat=True)
        .first()
    )
    if stored is None or stored == instance.password:
        return
    setattr(instance, _CHANGED, not _is_hasher_upgrade(instance, update_fields, stored))


def revoke_after_password_change(
    sender: Any, instance: Any, created: bool = False, raw: bool = False, **kwargs: Any
) -> None:
    if getattr(instance, _CHANGED, False):
        setattr(instance, _CHANGED, False)
        services.revoke_user_tokens(instance, reason="password changed")


def revoke_before_user_deletion(sender: Any, instance: Any, **kwargs: Any) -> None:
    services.revoke_user_tokens(instance, reason="user deleted")


def connect() -> None:
    user_model = get_user_model()
    pre_delete.connect(
        revoke_before_user_deletion,
        sender=user_model,
        dispatch_uid="apitokens.revoke_before_user_deletion",
    )
    pre_save.connect(
        note_password_change, sender=user_model, dispatch_uid="apitokens.note_password_change"
    )
    post_save.connect(
        revoke_after_password_change,
        sender=user_model,
        dispatch_uid="apitokens.revoke_after_password_change",
    )
