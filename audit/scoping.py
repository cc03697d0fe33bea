"""Which audit events a user may read: the one place the API and the admin ask.

Superusers read every event. A sub-account reads the events of the instances it holds
a membership on: a membership on the whole instance sees all of that instance's events,
one narrowed to namespaces only the events whose ``namespace_name`` is one of them
(instance-wide and multi-namespace events are hidden from it, so it never learns of
objects outside its namespaces). Events of no instance (KMS administration) are for
superusers only. Anonymous and inactive users read nothing.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from accounts.scoping import scope
from audit.models import AuditEvent


def visible_events(
    user: Any, queryset: QuerySet[AuditEvent] | None = None
) -> QuerySet[AuditEvent]:
    """``queryset`` (default: every event) limited to the events ``user`` may read."""
    return scope(
        AuditEvent.objects.all() if queryset is None else queryset,
        user,
        instance_path="instance_name",
        namespace_path="namespace_name",
        by_name=True,
    )
