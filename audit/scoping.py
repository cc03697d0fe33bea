"""Which audit events a user may read: the one place the API and the admin ask.

Superusers read every event. A sub-account reads the events of the instances it holds
a membership on: a membership on the whole instance sees all of that instance's events,
one narrowed to namespaces only the events whose ``namespace_name`` is one of them
(instance-wide and multi-namespace events are hidden from it, so it never learns of
objects outside its namespaces). Events of no instance (KMS administration) and access
administration (``accounts.*``: memberships) are for superusers only, like the admin
pages that manage them; API token events (``apitokens.*``) name no instance, so they are
superusers' too. Anonymous and inactive users read nothing.

Events belong to an instance by its id (``AuditEvent.instance_id``), not its name: an
instance deleted and later created again under the same name is another instance, and
its members do not read the old one's events. Events recorded before the audit log stored
ids (``instance_id`` NULL; the table is append-only, they cannot be back-filled) are
matched by name, and only those not older than the member's instance: the events of an
earlier instance of that name all predate the current one's creation.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet

from accounts.backends import grants_of
from accounts.scoping import is_unscoped
from audit.models import AuditEvent

# Action prefixes of events only superusers read, whatever instance they name.
SUPERUSER_ONLY_ACTIONS: tuple[str, ...] = ("accounts.",)


def visible_condition(user: Any) -> Q | None:
    """The filter ``visible_events`` applies: None for a superuser (every event), otherwise
    a ``Q`` (matching nothing for a user without memberships)."""
    if is_unscoped(user):
        return None
    where = Q(pk__in=[])
    for grant in grants_of(user):
        of_instance = Q(instance_id=grant.instance_id)
        if grant.instance_created_at is not None:
            of_instance |= Q(
                instance_id__isnull=True,
                instance_name=grant.instance_name,
                at__gte=grant.instance_created_at,
            )
        if not grant.all_namespaces:
            of_instance &= Q(namespace_name__in=sorted(grant.namespace_names))
        where |= of_instance
    for prefix in SUPERUSER_ONLY_ACTIONS:
        where &= ~Q(action__startswith=prefix)
    return where


def visible_events(user: Any, queryset: QuerySet[AuditEvent] | None = None) -> QuerySet[AuditEvent]:
    """``queryset`` (default: every event) limited to the events ``user`` may read."""
    queryset = AuditEvent.objects.all() if queryset is None else queryset
    where = visible_condition(user)
    return queryset if where is None else queryset.filter(where)
