"""The audit log in the admin: read-only for everyone, superusers included.

Sub-accounts (readers and operators) see the events of their scope only
(``audit.scoping.visible_events``); others do not exist for them.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from audit.models import AuditEvent
from audit.scoping import visible_events


def _pretty(value: Any) -> str:
    if not value:
        return "-"
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
    return format_html('<pre class="audit-json">{}</pre>', text)


_FIELDS = (
    "at", "actor_type", "actor", "actor_label", "source_ip", "action", "object_type",
    "object_id", "object_repr", "instance_name", "namespace_name", "pretty_changes",
    "pretty_details",
)


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = [
        "at", "actor_type", "actor_label", "action", "object_type", "object_repr",
        "instance_name", "namespace_name", "source_ip",
    ]
    list_filter = [
        "actor_type",
        "action",
        "object_type",
        ("actor", admin.RelatedOnlyFieldListFilter),
        "namespace_name",
        "at",
    ]
    date_hierarchy = "at"
    search_fields = ["actor_label", "object_repr", "object_id"]
    search_help_text = "Search by actor, object name or object id."
    ordering = ["-at", "-id"]
    list_per_page = 100
    show_full_result_count = False
    fields = _FIELDS
    readonly_fields = _FIELDS

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

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False
