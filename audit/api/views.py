"""``GET /api/v1/audit/events/``: the audit log, read-only, newest first.

Superusers read every event; sub-accounts (readers and operators) the events of their
scope (``audit.scoping``): a membership on a whole instance all of that instance's
events, one narrowed to namespaces only those namespaces' events. Events outside the
scope are not listed and answer 404. KMS administration events are for superusers only.

Filters (query parameters, all optional, combined with AND):

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

import datetime
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import exceptions, viewsets
from rest_framework.request import Request

from audit.api.serializers import AuditEventSerializer
from audit.models import ActorType, AuditEvent
from audit.scoping import visible_events
from config.api import ActionPermission
from config.errors import ValidationFailed
from config.ids import is_id

VIEW = "audit.view_auditevent"


def _invalid(name: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"Invalid {name}: {message}", fields={name: [message]})


def _datetime_param(request: Request, name: str) -> datetime.datetime | None:
    value = request.query_params.get(name)
    if value in (None, ""):
        return None
    try:
        parsed = parse_datetime(value)
    except ValueError:
        parsed = None
    if parsed is None:
        raise _invalid(
            name, f"{value[:40]!r} is not an ISO 8601 date-time (e.g. 2025-01-31T12:00:00Z)."
        )
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed, datetime.UTC)
    try:
        # In UTC: PostgreSQL refuses offsets beyond ±15:59 (schemathesis sent +17:10).
        return parsed.astimezone(datetime.UTC)
    except OverflowError:
        raise _invalid(name, f"{value[:40]!r} is out of range once converted to UTC.") from None


def _query(
    name: str, description: str, kind: Any = OpenApiTypes.STR, **extra: Any
) -> OpenApiParameter:
    return OpenApiParameter(name, kind, OpenApiParameter.QUERY, description=description, **extra)


@extend_schema_view(
    list=extend_schema(
        parameters=[
            _query(
                "actor",
                "Only events of this actor: a user id (digits) or an actor label "
                "(a username, `registry:<instance>`, `manage.py <command>`, `system`).",
            ),
            _query("actor_type", "Only events of this kind of actor.", enum=ActorType.values),
            _query(
                "action",
                "Only this action code (`kms.key.created`), or the codes "
                "starting with a prefix ending in `*` (`kms.key.*`).",
            ),
            _query("object_type", "Only events about this kind of object (`kms.key`)."),
            _query("object_id", "Only events about the object with this id."),
            _query("instance", "Only events of the registry instance with this name."),
            _query(
                "namespace",
                "Only events about the namespace with this name (exact; "
                "an empty value matches no event).",
            ),
            _query(
                "since",
                "Only events at or after this ISO 8601 date-time (UTC when without a time zone).",
                OpenApiTypes.DATETIME,
            ),
            _query(
                "until",
                "Only events at or before this ISO 8601 date-time (UTC when without a time zone).",
                OpenApiTypes.DATETIME,
            ),
        ]
    )
)
class AuditEventViewSet(viewsets.ReadOnlyModelViewSet):
    """Audit events of the caller's scope. Filters: actor, actor_type, action, object_type,
    object_id, instance, namespace, since, until."""

    permission_classes = [ActionPermission]
    action_permissions = {"list": VIEW, "retrieve": VIEW, "metadata": VIEW}
    serializer_class = AuditEventSerializer

    def get_queryset(self) -> QuerySet[AuditEvent]:
        queryset = visible_events(self.request.user).order_by("-at", "-id")
        params = self.request.query_params
        actor = params.get("actor")
        if actor:
            queryset = (
                queryset.filter(actor_id=int(actor))
                if is_id(actor)
                else queryset.filter(actor_label=actor)
            )
        actor_type = params.get("actor_type")
        if actor_type:
            if actor_type not in ActorType.values:
                raise _invalid(
                    "actor_type",
                    f"{actor_type[:40]!r} is not one of {', '.join(ActorType.values)}.",
                )
            queryset = queryset.filter(actor_type=actor_type)
        action = params.get("action")
        if action:
            if action.endswith("*"):
                queryset = queryset.filter(action__startswith=action[:-1])
            else:
                queryset = queryset.filter(action=action)
        for name, field in (
            ("object_type", "object_type"),
            ("object_id", "object_id"),
            ("instance", "instance_name"),
        ):
            value = params.get(name)
            if value:
                queryset = queryset.filter(**{field: value})
        if "namespace" in params:
            # No namespace is named "": an empty value selects no event (rather than every
            # one, which would read as "the events of namespace ''").
            namespace = params["namespace"]
            queryset = queryset.filter(namespace_name=namespace) if namespace else queryset.none()
        since = _datetime_param(self.request, "since")
        until = _datetime_param(self.request, "until")
        if since and until and since > until:
            raise _invalid("since", "must not be later than until.")
        if since:
            queryset = queryset.filter(at__gte=since)
        if until:
            queryset = queryset.filter(at__lte=until)
        return queryset

    def get_object(self) -> AuditEvent:
        pk = self.kwargs["pk"]
        events = visible_events(self.request.user)
        event = events.filter(pk=int(pk)).first() if is_id(pk) else None
        if event is None:
            raise exceptions.NotFound(f"No audit event with id {pk[:40]}.")
        self.check_object_permissions(self.request, event)
        return event
