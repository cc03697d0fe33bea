"""The audit log in the admin: read-only for everyone, superusers included.

Sub-accounts (readers and operators) see the events of their scope only
(``audit.scoping.visible_events``); others do not exist for them.

The table is append-only and grows without bound, so no list filter reads it for its
choices (Django's field filters run a ``SELECT DISTINCT`` over it on every page): actions
and object types come from the fixed lists of ``audit.services``, namespaces from the
namespaces the user may see, actors from the users table (bounded). For the same reason
there is no date hierarchy; the date filter ("at") queries nothing.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from accounts.scoping import is_unscoped, visible_namespaces
from audit import redaction
from audit.models import AuditEvent
from audit.scoping import visible_events
from audit.services import ACTION_APPS, KNOWN_ACTIONS, KNOWN_OBJECT_TYPES


def _pretty(value: Any) -> str:
    if not value:
        return "-"
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
    return format_html('<pre class="audit-json">{}</pre>', text)


Choices = list[tuple[str, str]]


class _BoundedFilter(admin.SimpleListFilter):
    """A filter on one column whose choices come from ``options`` (never from the audit
    table). A value applied from the URL that is not among them (an old bookmark, a
    namespace since deleted) is offered too: Django drops a filter without choices, which
    would then show every event instead of the ones asked for."""

    field: str

    def options(self, request: HttpRequest) -> Choices:
        raise NotImplementedError

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> Choices:
        choices = self.options(request)
        applied = self.value()
        if applied and applied not in {value for value, _label in choices}:
            choices.append((applied, applied))
        return choices

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        return queryset.filter(**{self.field: value}) if value else queryset


class ActionFilter(_BoundedFilter):
    """One action code, or every action of an app ("kms.*")."""

    title = "action"
    parameter_name = field = "action"

    def options(self, request: HttpRequest) -> Choices:
        apps = [(f"{app}.*", f"{app}.* (all)") for app in ACTION_APPS]
        return apps + [(code, code) for code in KNOWN_ACTIONS]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value and value.endswith(".*"):
            return queryset.filter(action__startswith=value[:-1])
        return super().queryset(request, queryset)


class ObjectTypeFilter(_BoundedFilter):
    title = "object type"
    parameter_name = field = "object_type"

    def options(self, request: HttpRequest) -> Choices:
        return [(object_type, object_type) for object_type in KNOWN_OBJECT_TYPES]


class NamespaceFilter(_BoundedFilter):
    """The namespaces the user may see. Events store the name, so one choice per name,
    labelled with the instances that have a namespace of that name."""

    title = "namespace"
    parameter_name = field = "namespace_name"

    def options(self, request: HttpRequest) -> Choices:
        instances: dict[str, list[str]] = {}
        rows = (
            visible_namespaces(request.user)
            .order_by("name", "instance__name")
            .values_list("name", "instance__name")
        )
        for name, instance_name in rows:
            instances.setdefault(name, []).append(instance_name)
        return [(name, f"{', '.join(names)} / {name}") for name, names in instances.items()]


MAX_ACTOR_CHOICES = 200


class ActorFilter(_BoundedFilter):
    """Events by one user (their ``actor_label``, which outlives the user).

    Choices come from the users table, not from the events: superusers get the first
    ``MAX_ACTOR_CHOICES`` usernames (other actors, and webhooks, commands and the system,
    through the search box and the actor type filter); a sub-account gets its own
    username only, so the filter tells it nothing of the accounts that exist (the rows of
    its scope show their actors anyway)."""

    title = "actor"
    parameter_name = "actor"
    field = "actor_label"

    def options(self, request: HttpRequest) -> Choices:
        user = request.user
        if is_unscoped(user):
            usernames = list(
                get_user_model()
                .objects.order_by("username")
                .values_list("username", flat=True)[:MAX_ACTOR_CHOICES]
            )
        else:
            usernames = [user.get_username()]
        return [(username, username) for username in usernames]


_FIELDS = (
    "at",
    "actor_type",
    "actor",
    "actor_label",
    "source_ip",
    "action",
    "object_type",
    "object_id",
    "object_repr",
    "instance_name",
    "instance_id",
    "namespace_name",
    "pretty_changes",
    "pretty_details",
)


_RESTRICTED = {"pretty_changes": "restricted_changes", "pretty_details": "restricted_details"}


class _Nobody:
    """A viewer without permissions: display methods get no request."""

    @staticmethod
    def has_perm(perm: str) -> bool:
        return False


_NOBODY = _Nobody()


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = [
        "at",
        "actor_type",
        "actor_label",
        "action",
        "object_type",
        "object_repr",
        "instance_name",
        "namespace_name",
        "source_ip",
    ]
    # No filter reads the audit table for its choices (see the module docstring);
    # "actor_type" (a choices field) and "at" (today, past 7 days, this month, this year)
    # query nothing. No ``date_hierarchy``: its links come from a ``SELECT DISTINCT`` of
    # the days, months or years over the (filtered) table on every page. ``at__year``,
    # ``at__month``... in the URL still filter.
    list_filter = [
        "actor_type",
        ActorFilter,
        ActionFilter,
        ObjectTypeFilter,
        NamespaceFilter,
        "at",
    ]
    search_fields = ["actor_label", "object_repr", "object_id"]
    search_help_text = "Search by actor, object name or object id."
    ordering = ["-at", "-id"]
    list_per_page = 100
    show_full_result_count = False
    fields = _FIELDS
    readonly_fields = (*_FIELDS, *_RESTRICTED.values())

    def get_queryset(self, request: HttpRequest) -> QuerySet[AuditEvent]:
        return visible_events(request.user, super().get_queryset(request))

    def has_view_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        # The permission is checked without the object on purpose: every event the admin
        # shows (changelist rows, the change page) comes from ``get_queryset``, which is
        # already limited to the user's scope, so an event out of scope is "does not
        # exist" like a missing id. ``MembershipBackend.has_perm(user, perm, obj)`` knows
        # nothing of audit events (they hold names, not ids) and would refuse them all.
        return request.user.has_perm("audit.view_auditevent")

    @admin.display(description="Changes (before, after)")
    def pretty_changes(self, event: AuditEvent) -> str:
        return _pretty(event.changes)

    @admin.display(description="Details")
    def pretty_details(self, event: AuditEvent) -> str:
        return _pretty(event.details)

    # The same, with the keys of ``AUDIT_RESTRICTED_FIELDS`` hidden (``get_fields`` picks).
    @admin.display(description="Changes (before, after)")
    def restricted_changes(self, event: AuditEvent) -> str:
        return _pretty(redaction.visible(event.object_type, event.changes, _NOBODY))

    @admin.display(description="Details")
    def restricted_details(self, event: AuditEvent) -> str:
        return _pretty(redaction.visible(event.object_type, event.details, _NOBODY))

    def get_fields(self, request: HttpRequest, obj: AuditEvent | None = None):
        rule = settings.AUDIT_RESTRICTED_FIELDS.get(obj.object_type) if obj else None
        if rule and not request.user.has_perm(rule["permission"]):
            return [_RESTRICTED.get(name, name) for name in _FIELDS]
        return list(_FIELDS)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False
