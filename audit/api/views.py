"""``GET /api/v1/audit/events/``: the audit log, read-only, newest first.

Superusers read every event; sub-accounts (readers and operators) the events of their
scope (``audit.scoping``): a membership on a whole instance all of that instance's
events, one narrowed to namespaces only those namespaces' events. Events outside the
scope are not listed and answer 404. KMS administration events are for superusers only.

Filters (query parameters, all optional, combined with AND; ``audit.filtersets``):

- ``actor``: a user id (digits) or an actor label (a username, ``registry:<instance>``,
  ``manage.py <command>``, ``system``);
- ``actor_type``: ``user``, ``registry-webhook``, ``command`` or ``system``;
- ``action``: an action code (``kms.key.created``), or a prefix ending in ``*``
  (``kms.key.*``);
- ``object_type`` (``kms.key``) and ``object_id``; ``instance``: an instance name;
- ``namespace``: a namespace name (exact): the events about that one namespace (an
  empty value matches nothing: instance-wide events concern no single namespace);
- ``since`` / ``until``: ISO 8601 date-times (inclusive; without a time zone, UTC).

A malformed value answers 400 with ``fields`` naming the parameter.
"""

from __future__ import annotations

from django.db.models import QuerySet
from rest_framework import exceptions, viewsets

from audit.api.serializers import AuditEventSerializer
from audit.filtersets import AuditEventFilterSet
from audit.models import AuditEvent
from audit.scoping import visible_events
from config.api import ActionPermission
from config.ids import is_id

VIEW = "audit.view_auditevent"


class AuditEventViewSet(viewsets.ReadOnlyModelViewSet):
    """Audit events of the caller's scope. Filters: actor, actor_type, action, object_type,
    object_id, instance, namespace, since, until."""

    permission_classes = [ActionPermission]
    action_permissions = {"list": VIEW, "retrieve": VIEW, "metadata": VIEW}
    serializer_class = AuditEventSerializer
    filterset_class = AuditEventFilterSet

    def get_queryset(self) -> QuerySet[AuditEvent]:
        return visible_events(self.request.user).order_by("-at", "-id")

    def get_object(self) -> AuditEvent:
        pk = self.kwargs["pk"]
        events = visible_events(self.request.user)
        event = events.filter(pk=int(pk)).first() if is_id(pk) else None
        if event is None:
            raise exceptions.NotFound(f"No audit event with id {pk[:40]}.")
        self.check_object_permissions(self.request, event)
        return event
