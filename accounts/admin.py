"""Memberships in the admin: superusers only (they grant and revoke sub-accounts' access).

DRF tokens have the stock "Tokens" admin (``rest_framework.authtoken``), where
superusers create and revoke users' tokens.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from accounts.models import InstanceMembership


@admin.register(InstanceMembership)
class InstanceMembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "instance", "role", "namespace_list", "granted_by", "granted_at"]
    list_filter = ["role", "instance"]
    search_fields = ["user__username", "instance__name"]
    filter_horizontal = ["namespaces"]
    readonly_fields = ["granted_by", "granted_at"]
    fields = ["user", "instance", "role", "namespaces", "granted_by", "granted_at"]

    def _superuser(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_superuser)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._superuser(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._superuser(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self._superuser(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._superuser(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._superuser(request)

    @admin.display(description="namespaces")
    def namespace_list(self, obj: InstanceMembership) -> str:
        names = [ns.name for ns in obj.namespaces.all()]
        return ", ".join(names) if names else "all"

    def get_queryset(self, request: HttpRequest):
        return (
            super().get_queryset(request)
            .select_related("user", "instance", "granted_by")
            .prefetch_related("namespaces")
        )

    def save_model(self, request: HttpRequest, obj: InstanceMembership, form: Any,
                   change: bool) -> None:
        if not change:
            obj.granted_by = request.user  # type: ignore[assignment]
        super().save_model(request, obj, form, change)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        namespaces = form.instance.namespaces.exclude(instance_id=form.instance.instance_id)
        if namespaces.exists():
            # A namespace of another instance grants nothing: drop it rather than mislead.
            form.instance.namespaces.remove(*namespaces)
