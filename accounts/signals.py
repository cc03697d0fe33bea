"""Deleting a user takes its memberships with it: revoke them through the service first,
so the audit log says so (the cascade alone would remove them silently). A user is
deleted by Django's own admin and commands, so a signal is the one place to hear it."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db.models.signals import pre_delete

from accounts.models import InstanceMembership
from accounts.services import revoke_membership


def revoke_before_user_deletion(sender: Any, instance: Any, **kwargs: Any) -> None:
    for membership in InstanceMembership.objects.select_related("user", "instance").filter(
        user=instance
    ):
        revoke_membership(membership=membership)


def connect() -> None:
    pre_delete.connect(
        revoke_before_user_deletion,
        sender=get_user_model(),
        dispatch_uid="accounts.revoke_before_user_deletion",
    )
