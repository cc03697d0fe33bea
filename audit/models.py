"""The audit log: one append-only row per recorded change.

Rows are written by ``audit.services.record`` and never changed or deleted:

- ``AuditEvent.save()`` inserts a new row and refuses to update an existing one;
  ``delete()`` refuses.
- The manager's QuerySet refuses ``update()``, ``delete()`` and ``bulk_update()``. The one
  change allowed is the ``SET_NULL`` Django applies to ``actor`` when a user is deleted
  (``actor_label`` keeps the username), so users can still be deleted.
- On PostgreSQL a trigger (migration 0002) refuses ``UPDATE`` and ``DELETE`` of rows
  whatever the client, with the same single exception.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from config.errors import DomainError

ACTION_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"


class AuditLogIsAppendOnly(DomainError):
    code = "UnsupportedOperation.AuditLogAppendOnly"
    http_status = 405
    default_message = "Audit events cannot be changed or deleted."


class ActorType(models.TextChoices):
    USER = "user", "User"
    REGISTRY_WEBHOOK = "registry-webhook", "Registry webhook"
    COMMAND = "command", "Management command"
    SYSTEM = "system", "System"


def _only_clears_the_actor(values: dict[str, Any]) -> bool:
    """The update Django's ``SET_NULL`` makes when a user is deleted."""
    return (
        bool(values)
        and set(values) <= {"actor", "actor_id"}
        and all(value is None for value in values.values())
    )


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs: Any) -> int:
        if _only_clears_the_actor(kwargs):
            return super().update(**kwargs)
        raise AuditLogIsAppendOnly("Audit events cannot be updated.")

    def bulk_update(self, objs: Any, fields: Any, batch_size: int | None = None) -> int:
        raise AuditLogIsAppendOnly("Audit events cannot be updated.")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise AuditLogIsAppendOnly("Audit events cannot be deleted.")

    # The flags Django's own QuerySet.delete carries (templates never call it; the manager
    # does not get it). Typing has no way to declare attributes set on a function, hence
    # the ignores.
    delete.alters_data = True  # type: ignore[attr-defined]
    delete.queryset_only = True  # type: ignore[attr-defined]

    def _raw_delete(self, using: Any) -> int:
        raise AuditLogIsAppendOnly("Audit events cannot be deleted.")

    _raw_delete.alters_data = True  # type: ignore[attr-defined]


AuditEventManager = models.Manager.from_queryset(AuditEventQuerySet)


class AuditEvent(models.Model):
    at = models.DateTimeField(default=timezone.now, db_index=True, editable=False)
    actor_type = models.CharField(max_length=20, choices=ActorType.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    # Who, in words: the username, "registry:<instance>", "manage.py <command>", "system".
    actor_label = models.CharField(max_length=150)
    # A dotted code such as "kms.key.created" (see README / audit.services).
    action = models.CharField(max_length=100)
    object_type = models.CharField(max_length=100, blank=True, default="")  # "kms.key"
    object_id = models.CharField(max_length=100, blank=True, default="")
    object_repr = models.CharField(max_length=200, blank=True, default="")
    # The registry instance the object belongs to ("" when none), for display and filters.
    instance_name = models.CharField(max_length=50, blank=True, default="")
    # That instance's id (no foreign key: events outlive their instance, and ``audit`` sits
    # below ``registry``), for scoping: a later instance of the same name is another id.
    # NULL for events of no instance, and for events recorded before the column existed.
    instance_id = models.BigIntegerField(null=True, blank=True)
    # The namespace (its own name) of that instance the event concerns; "" when the event
    # is instance-wide or spans several namespaces. Sub-accounts narrowed to namespaces
    # see only the events of theirs (``audit.scoping``).
    namespace_name = models.CharField(max_length=255, blank=True, default="")
    # {"field": [before, after], ...} for the fields the change touched.
    changes = models.JSONField(default=dict, blank=True)
    # Anything else worth keeping: scope, counts, codes.
    details = models.JSONField(default=dict, blank=True)
    source_ip = models.GenericIPAddressField(null=True, blank=True)

    objects = AuditEventManager()

    class Meta:
        ordering = ["-at", "-id"]
        # Only viewing exists: nobody (not even a superuser in the admin) adds, changes or
        # deletes audit events.
        default_permissions = ("view",)
        base_manager_name = "objects"
        verbose_name = "audit event"
        indexes = [
            models.Index(fields=["action", "at"], name="audit_action_at"),
            models.Index(fields=["object_type", "object_id"], name="audit_object"),
            models.Index(fields=["actor_type", "at"], name="audit_actor_type_at"),
            models.Index(fields=["actor_label", "at"], name="audit_actor_label_at"),
            models.Index(fields=["instance_name", "at"], name="audit_instance_at"),
            models.Index(
                fields=["instance_name", "namespace_name", "at"], name="audit_namespace_at"
            ),
            models.Index(
                fields=["instance_id", "namespace_name", "at"], name="audit_instance_id_at"
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(actor_type__in=ActorType.values), name="audit_actor_type_valid"
            ),
            models.CheckConstraint(
                condition=Q(action__regex=ACTION_PATTERN), name="audit_action_dotted_code"
            ),
        ]

    def __str__(self) -> str:
        what = f" {self.object_type} {self.object_repr or self.object_id}".rstrip()
        return f"{self.action}{what} by {self.actor_label}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AuditLogIsAppendOnly("Audit events cannot be changed.")
        kwargs["force_insert"] = True
        kwargs.pop("force_update", None)
        kwargs.pop("update_fields", None)
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise AuditLogIsAppendOnly("Audit events cannot be deleted.")
