"""The registry's namespace page with signing: a policy column and filter, the policy's
health. Registered over registry's in ``signing.admin``."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from kms.models import KeyState
from registry import admin as registry_admin
from registry.models import Namespace
from signing.admin.common import ERROR_STYLE, MUTED_STYLE, health_html
from signing.admin.filters import SigningPolicyFilter
from signing.models import SigningPolicy
from signing.selectors import policy_health


class SigningNamespaceAdmin(registry_admin.NamespaceAdmin):
    # The name, then the policy's state (with a key problem) and the counts.
    list_display = [
        registry_admin.NamespaceAdmin.list_display[0],
        "signing_policy",
        *registry_admin.NamespaceAdmin.list_display[1:],
    ]
    list_filter = [*registry_admin.NamespaceAdmin.list_filter, SigningPolicyFilter]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Namespace]:
        policy = SigningPolicy.objects.filter(namespace_id=OuterRef("pk"))
        return (
            super()
            .get_queryset(request)
            .annotate(
                _policy_id=Subquery(policy.values("pk")[:1]),
                _policy_disabled=Subquery(policy.values("disabled")[:1]),
                _policy_key_state=Subquery(policy.values("key__state")[:1]),
            )
        )

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list:
        fields = list(super().get_fields(request, obj))
        return [*fields, "signing_policy_health"] if obj else fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list:
        fields = list(super().get_readonly_fields(request, obj))
        return [*fields, "signing_policy_health"] if obj else fields

    @admin.display(description="signing policy", ordering="_policy_disabled")
    def signing_policy(self, obj: Namespace) -> str:
        policy_id = obj._policy_id  # type: ignore[attr-defined]
        if policy_id is None:
            return format_html('<span style="{}">none</span>', MUTED_STYLE)
        url = reverse("admin:signing_signingpolicy_change", args=[policy_id])
        state = "disabled" if obj._policy_disabled else "enabled"  # type: ignore[attr-defined]
        key_state = obj._policy_key_state  # type: ignore[attr-defined]
        if key_state != KeyState.ENABLED:
            return format_html(
                '<a href="{}">{}</a> <span style="{}">(key {})</span>',
                url,
                state,
                ERROR_STYLE,
                key_state,
            )
        return format_html('<a href="{}">{}</a>', url, state)

    @admin.display(description="signing policy")
    def signing_policy_health(self, obj: Namespace) -> str:
        policy = (
            SigningPolicy.objects.select_related("key")
            .defer("key__sealed_private_key")
            .filter(namespace=obj)
            .first()
        )
        if policy is None:
            return format_html(
                'None. <a href="{}">Add a signing policy</a>',
                reverse("admin:signing_signingpolicy_add"),
            )
        url = reverse("admin:signing_signingpolicy_change", args=[policy.pk])
        return format_html(
            '<a href="{}">{}</a> ({}) — {}',
            url,
            policy.name,
            "disabled" if policy.disabled else "enabled",
            health_html(policy_health(policy)),
        )
