"""The audit log in the admin: read-only for everyone, superusers included."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from accounts.scoping import scope
from audit.models import AuditEvent


def _pretty(value: Any) -> str:
    if not value:
        return "-"
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
    return format_html('<pre class="audit-json">{}</pre>', text)


_FIELDS = (
    "at", "actor_type", "actor", "actor_label", "source_ip", "action", "object_type",
    "object_id", "object_repr", "instance_name", "pretty_changes", "pretty_details",
)


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = [
        "at", "actor_type", "actor_label", "action", "object_type", "object_repr",
        "instance_name", "source_ip",
    ]
    list_filter = [
        "actor_type",
        "action",
        "object_type",
        ("actor", admin.RelatedOnlyFieldListFilter),
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
        # Sub-accounts see their instances' events only (administrators everything).
        return scope(
            super().get_queryset(request), request.user, instance_path="instance_name",
            by_name=True,
        )

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
