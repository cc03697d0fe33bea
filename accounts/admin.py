"""Memberships in the admin: superusers only (they grant and revoke sub-accounts' access).
Saving and deleting go through ``accounts.services``, which audits each change. A
membership's user and instance are fixed once granted (revoke and grant to move one).

API tokens have their own admin (``apitokens.admin``): superusers see and revoke them.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts import services
from accounts.models import InstanceMembership
from config.admin_site import SuperuserOnlyAdmin


class InstanceMembershipForm(forms.ModelForm):
    class Meta:
        model = InstanceMembership
        fields = ["user", "instance", "role", "all_namespaces", "namespaces"]

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        # On a change the instance is read-only, so not in the data: the membership's own.
        instance = data.get("instance") or (self.instance.instance if self.instance.pk else None)
        namespaces = list(data.get("namespaces") or [])
        if data.get("all_namespaces"):
            if namespaces:
                self.add_error(
                    "namespaces",
                    "Untick 'all namespaces' to narrow the membership "
                    "to these namespaces, or clear them.",
                )
        elif not namespaces:
            self.add_error(
                "namespaces",
                "Choose the namespaces of a narrowed membership, or tick 'all namespaces'.",
            )
        if instance is not None:
            foreign = sorted(ns.name for ns in namespaces if ns.instance_id != instance.pk)
            if foreign:
                self.add_error(
                    "namespaces",
                    f"Not namespaces of instance {instance.name}: {', '.join(foreign)}.",
                )
        return data


@admin.register(InstanceMembership)
class InstanceMembershipAdmin(SuperuserOnlyAdmin):
    form = InstanceMembershipForm
    list_display = ["user", "instance", "role", "namespace_list", "granted_by", "granted_at"]
    list_filter = ["role", "instance"]
    search_fields = ["user__username", "instance__name"]
    filter_horizontal = ["namespaces"]
    readonly_fields = ["granted_by", "granted_at"]
    fields = [
        "user",
        "instance",
        "role",
        "all_namespaces",
        "namespaces",
        "granted_by",
        "granted_at",
    ]

    @admin.display(description="namespaces")
    def namespace_list(self, obj: InstanceMembership) -> str:
        if obj.all_namespaces:
            return "all"
        return ", ".join(ns.name for ns in obj.namespaces.all()) or "none (all deleted)"

    def get_queryset(self, request: HttpRequest):
        return (
            super()
            .get_queryset(request)
            .select_related("user", "instance", "granted_by")
            .prefetch_related("namespaces")
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fixed = ["user", "instance"] if obj is not None else []
        return [*fixed, "granted_by", "granted_at"]

    def save_model(
        self, request: HttpRequest, obj: InstanceMembership, form: Any, change: bool
    ) -> None:
        data = form.cleaned_data
        values = {
            "role": data["role"],
            "all_namespaces": data["all_namespaces"],
            "namespaces": list(data["namespaces"]),
        }
        if change:
            services.change_membership(membership=obj, actor=request.user, **values)
            return
        created = services.grant_membership(
            user=data["user"], instance=data["instance"], granted_by=request.user, **values
        )
        obj.pk, obj.granted_by, obj.granted_at = created.pk, created.granted_by, created.granted_at
        obj._state.adding = False

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        # The services set (and audited) the namespaces; ``form.save_m2m`` would set them
        # again behind the audit log's back.
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    def delete_model(self, request: HttpRequest, obj: InstanceMembership) -> None:
        services.revoke_membership(membership=obj, actor=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[InstanceMembership]) -> None:
        for membership in queryset.select_related("user", "instance"):
            services.revoke_membership(membership=membership, actor=request.user)
