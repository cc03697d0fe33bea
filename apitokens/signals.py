"""A changed password revokes the user's API tokens.

Every way of changing a password ends in saving the user with a new hash in
``password``: the admin's password forms, ``manage.py changepassword``,
``set_password()`` + ``save()``, ``set_unusable_password()`` + ``save()``, an assigned
hash. So the check sits on the user model's save: ``pre_save`` compares the new hash with
the stored one, ``post_save`` revokes (in the same transaction as the save, audited).

One save changes the hash without a new password: Django's hasher upgrade in
``check_password`` (more iterations after a Django upgrade), which saves only
``password`` after clearing ``_password``. It is left alone, or a Django upgrade would
sign every user's scripts out.

Not covered: ``QuerySet.update(password=...)``, which sends no signal (nothing in Django
or Signet does it).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db.models.signals import post_save, pre_save

from apitokens import services

_CHANGED = "_signet_password_changed"


def _is_hasher_upgrade(user: Any, update_fields: Any) -> bool:
    return user._password is None and update_fields is not None and set(update_fields) == {
        "password"
    }


def note_password_change(sender: Any, instance: Any, raw: bool = False,
                         update_fields: Any = None, **kwargs: Any) -> None:
    setattr(instance, _CHANGED, False)
    if raw or instance.pk is None or instance._state.adding:
        return
    if update_fields is not None and "password" not in update_fields:
        return  # e.g. the last_login update at each sign-in
    if _is_hasher_upgrade(instance, update_fields):
        return
    stored = (
        sender._default_manager.using(kwargs.get("using"))
        .filter(pk=instance.pk).values_list("password", flat=True).first()
    )
    setattr(instance, _CHANGED, stored is not None and stored != instance.password)


def revoke_after_password_change(sender: Any, instance: Any, created: bool = False,
                                 raw: bool = False, **kwargs: Any) -> None:
    if getattr(instance, _CHANGED, False):
        setattr(instance, _CHANGED, False)
        services.revoke_user_tokens(instance, reason="password changed")


def connect() -> None:
    user_model = get_user_model()
    pre_save.connect(note_password_change, sender=user_model,
                     dispatch_uid="apitokens.note_password_change")
    post_save.connect(revoke_after_password_change, sender=user_model,
                      dispatch_uid="apitokens.revoke_after_password_change")
