"""The registry's namespace page with signing: a policy column and filter, the policy's
health, and deleting a namespace that has a policy. Registered over registry's in
``signing.admin``."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from kms.models import KeyState
from registry import admin as registry_admin
from registry.models import Namespace
from signing.admin.common import ERROR_STYLE, MUTED_STYLE, health_html
from signing.admin.filters import SigningPolicyFilter
from signing.models import Signature, SignatureStatus, SigningPolicy
from signing.selectors import policy_health

# Deleted with their namespace's policy, never by hand: the signature admin grants no
# delete permission, which Django would otherwise report as a missing permission.
_GO_WITH_THE_POLICY = {
    str(SigningPolicy._meta.verbose_name),
    str(Signature._meta.verbose_name),
}


def policies_of(namespaces) -> list[SigningPolicy]:
    """The policies of these namespaces with their signature counts (one query)."""
    return list(
        SigningPolicy.objects.filter(namespace__in=[namespace.pk for namespace in namespaces])
        .select_related("namespace__instance")
        .only("name", "namespace__name", "namespace__instance__name")
        .annotate(
            signed_count=Count("signatures", filter=Q(signatures__status=SignatureStatus.SIGNED)),
            pending_count=Count("signatures", filter=Q(signatures__status=SignatureStatus.PENDING)),
            failed_count=Count("signatures", filter=Q(signatures__status=SignatureStatus.FAILED)),
        )
        .order_by("namespace__instance__name", "namespace__name")
    )


class SigningNamespaceAdmin(registry_admin.NamespaceAdmin):
    delete_confirmation_template = "admin/signing/namespace/delete_confirmation.html"
    delete_selected_confirmation_template = (
        "admin/signing/namespace/delete_selected_confirmation.html"
    )
    # The name, then the policy's state (with a key problem) and the counts.
    list_display = [
        registry_admin.NamespaceAdmin.list_display[0],
        "signing_policy",
        *registry_admin.NamespaceAdmin.list_display[1:],
    ]
    list_filter = [*registry_admin.NamespaceAdmin.list_filter, SigningPolicyFilter]
    actions = ["delete_selected"]  # signing's, below: it names the policies to delete first

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

    # --- deleting: a namespace with a signing policy is deleted after its policy ------------
    # The policy's own delete page counts the signatures that go and warns what verification
    # then does (signing.admin.policy); a namespace delete would take them silently. So the
    # page names the policy and links to that page instead of offering the delete (or, as
    # Django would, blaming a missing permission to delete signatures).

    def get_deleted_objects(self, objs, request: HttpRequest):
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        perms_needed = {name for name in perms_needed if name not in _GO_WITH_THE_POLICY}
        policies = policies_of(objs)
        request.signing_policies_first = [  # type: ignore[attr-defined]
            {
                "policy": policy,
                "delete_url": reverse("admin:signing_signingpolicy_delete", args=[policy.pk]),
                "may_delete": request.user.has_perm("signing.delete_signingpolicy", policy),
            }
            for policy in policies
        ]
        if policies:
            # Protected: Django then shows no confirm button and refuses the POST.
            return deleted, counts, set(), [str(policy) for policy in policies]
        return deleted, counts, perms_needed, protected

    def render_delete_form(self, request: HttpRequest, context: dict) -> HttpResponse:
        context["policies_first"] = getattr(request, "signing_policies_first", [])
        return super().render_delete_form(request, context)

    @admin.action(description="Delete selected namespaces", permissions=["delete"])
    def delete_selected(self, request: HttpRequest, queryset: QuerySet[Namespace]):
        response = django_delete_selected(self, request, queryset)
        if isinstance(response, TemplateResponse) and response.context_data is not None:
            response.context_data["policies_first"] = getattr(request, "signing_policies_first", [])
        return response
