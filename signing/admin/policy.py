"""The signing policy admin: create, change, delete, re-sign and retry, all through the
services; every refusal (a ``DomainError``) becomes a form error or a message."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.contrib.admin.utils import quote, unquote
from django.contrib.admin.views.main import ChangeList
from django.db.models import Count, Q, QuerySet
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
)
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from accounts.scoping import is_unscoped, scope_model, visible_namespaces
from config.errors import DomainError
from kms import services as kms_services
from registry import admin as registry_admin
from signing.admin.common import health_html
from signing.admin.filters import PolicyHealthFilter, PolicyInstanceFilter, PolicyStatusFilter
from signing.admin.operation import progress_redirect
from signing.admin.policy_operations import PolicyOperationsMixin
from signing.admin.verification import VerificationSnippetsMixin
from signing.constants import SERVICE
from signing.forms import SigningPolicyForm
from signing.models import Signature, SignatureStatus, SigningPolicy
from signing.selectors import (
    Health,
    policy_health,
    resign_candidates,
    signatures_removed_by_deleting,
)
from signing.services.operations import start_policy_deletion
from signing.services.policies import validate_policy


def row_health(policy: SigningPolicy, *, authorized: bool) -> Health:
    """``policy_health`` for a changelist row: the grant is looked up once per page."""
    return policy_health(policy, authorized=authorized)


class PolicyChangeList(ChangeList):
    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        authorized = kms_services.is_service_authorized(SERVICE)
        for policy in self.result_list:
            policy._health = row_health(policy, authorized=authorized)


@admin.register(SigningPolicy)
class SigningPolicyAdmin(
    PolicyOperationsMixin,
    VerificationSnippetsMixin,
    registry_admin.ScopedAdminMixin,
    admin.ModelAdmin,
):
    form = SigningPolicyForm
    # The name, status, health (wrapping, never cut) and counts first; where it applies
    # and with which key after. Region, domain and history are on the policy's page.
    list_display = [
        "name",
        "enabled",
        "health",
        "signature_counts",
        "namespace_label",
        "key_alias",
    ]
    list_display_links = ["name"]
    list_filter = [PolicyInstanceFilter, PolicyStatusFilter, PolicyHealthFilter]
    search_fields = ["name", "namespace__name"]
    search_help_text = "Search by policy or namespace name."
    actions = ["delete_selected", "resign_selected", "retry_failed_selected"]

    class Media:
        css = registry_admin.ADMIN_CSS

    add_fieldsets = [(None, {"fields": ["namespace", "name", "key", "domain", "disabled"]})]
    change_fieldsets = [
        (
            None,
            {
                "fields": [
                    "namespace_name",
                    "instance_name",
                    "name",
                    "key",
                    "region",
                    "domain",
                    "disabled",
                    "health",
                ]
            },
        ),
        ("Signatures", {"fields": ["signature_summary"]}),
        (
            "Verify signatures",
            {
                "fields": ["public_key", "policy_json", "registries_d", "cosign_verify"],
                "description": "What users need to check the signatures of this namespace's "
                "images: the key's public key, a containers policy.json (skopeo, podman, "
                "CRI-O) with a registries.d entry, or cosign.",
            },
        ),
        ("History", {"fields": ["created_by", "created_at", "updated_at"]}),
    ]
    change_readonly_fields = [
        "namespace_name",
        "instance_name",
        "region",
        "health",
        "signature_summary",
        "public_key",
        "policy_json",
        "registries_d",
        "cosign_verify",
        "created_by",
        "created_at",
        "updated_at",
    ]

    # --- querysets, forms, pages ---------------------------------------------------------

    def get_queryset(self, request: HttpRequest) -> QuerySet[SigningPolicy]:
        def count(status: str) -> Count:
            return Count("signatures", filter=Q(signatures__status=status))

        return (
            super()
            .get_queryset(request)
            .select_related("namespace__instance", "key", "created_by")
            .defer("key__sealed_private_key")
            .annotate(
                _signed=count(SignatureStatus.SIGNED),
                _pending=count(SignatureStatus.PENDING),
                _failed=count(SignatureStatus.FAILED),
            )
        )

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return PolicyChangeList

    def get_fieldsets(self, request: HttpRequest, obj: SigningPolicy | None = None) -> list:
        return self.add_fieldsets if obj is None else self.change_fieldsets

    def get_readonly_fields(self, request: HttpRequest, obj: SigningPolicy | None = None):
        return [] if obj is None else self.change_readonly_fields

    def get_form(
        self,
        request: HttpRequest,
        obj: SigningPolicy | None = None,
        change: bool = False,
        **kwargs: Any,
    ) -> type:
        form = super().get_form(request, obj, change=change, **kwargs)
        user = request.user

        def __init__(self, *args: Any, **kw: Any) -> None:
            form.__init__(self, *args, **kw)
            if "namespace" in self.fields and not is_unscoped(user):
                # The picker offers only the namespaces the user may create policies in.
                allowed = visible_namespaces(user, perm="signing.add_signingpolicy")
                field = self.fields["namespace"]
                field.queryset = field.queryset.filter(pk__in=allowed.values("pk"))

        return type(form.__name__, (form,), {"user": user, "__init__": __init__})

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and not request.user.is_superuser:
            return request.user.has_perm("signing.change_signingpolicy", obj)
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and not request.user.is_superuser:
            return request.user.has_perm("signing.delete_signingpolicy", obj)
        return super().has_delete_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: SigningPolicy, form: Any, change: bool) -> None:
        """The form's create_policy/update_policy call saved it; report what it said."""
        outcome = form.outcome
        for warning in outcome.warnings:
            self.message_user(request, warning, messages.WARNING)
        if change and outcome.resign_candidates:
            url = reverse("admin:signing_signingpolicy_resign", args=[quote(obj.pk)])
            self.message_user(
                request,
                format_html(
                    "{} image(s) of this namespace are signed with an older key; their "
                    'signatures stay valid until re-signed. <a href="{}">Re-sign {} images '
                    "with the new key</a>.",
                    outcome.resign_candidates,
                    url,
                    outcome.resign_candidates,
                ),
                messages.WARNING,
            )

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> HttpResponse:
        extra_context = dict(extra_context or {})
        policy = self.get_object(request, unquote(object_id))
        if policy is not None:
            extra_context.update(self._page_context(request, policy))
        return super().change_view(request, object_id, form_url, extra_context)

    def _page_context(self, request: HttpRequest, policy: SigningPolicy) -> dict[str, Any]:
        try:
            warnings = validate_policy(
                namespace=policy.namespace,
                name=policy.name,
                key=policy.key,
                domain=policy.domain,
            )
        except DomainError:
            warnings = []  # the health field says what is wrong
        signer = self.has_sign_images_permission(request, policy)
        return {
            # A key in another region than the instance is among the warnings, once.
            "policy_warnings": warnings,
            "can_sign": signer,
            "resign_count": resign_candidates(policy).count() if signer else 0,
            "failed_count": policy._failed if signer else 0,  # type: ignore[attr-defined]
            **(self._operation_context(policy) if signer else {}),
        }

    # --- columns and read-only fields ----------------------------------------------------

    @admin.display(description="namespace", ordering="namespace__name")
    def namespace_name(self, obj: SigningPolicy) -> str:
        return obj.namespace.name

    @admin.display(description="instance", ordering="namespace__instance__name")
    def instance_name(self, obj: SigningPolicy) -> str:
        return obj.namespace.instance.name

    @admin.display(description="namespace", ordering="namespace__name")
    def namespace_label(self, obj: SigningPolicy) -> str:
        return f"{obj.namespace.instance.name} / {obj.namespace.name}"

    @admin.display(description="key", ordering="key__alias")
    def key_alias(self, obj: SigningPolicy) -> str:
        return obj.key.alias

    @admin.display(description="KMS region", ordering="kms_region")
    def region(self, obj: SigningPolicy) -> str:
        return obj.kms_region

    @admin.display(description="enabled", boolean=True, ordering="disabled")
    def enabled(self, obj: SigningPolicy) -> bool:
        return not obj.disabled

    @admin.display(description="health")
    def health(self, obj: SigningPolicy) -> str:
        health = getattr(obj, "_health", None) or policy_health(obj)
        return health_html(health)

    def _signatures_link(self, obj: SigningPolicy, status: str, count: int) -> str:
        url = reverse("admin:signing_signature_changelist")
        return format_html(
            '<a href="{}?policy={}&amp;status__exact={}">{}</a>', url, obj.pk, status, count
        )

    @admin.display(description="signed", ordering="_signed")
    def signed_count(self, obj: SigningPolicy) -> str:
        return self._signatures_link(obj, SignatureStatus.SIGNED, obj._signed)  # type: ignore[attr-defined]

    @admin.display(description="pending", ordering="_pending")
    def pending_count(self, obj: SigningPolicy) -> str:
        return self._signatures_link(obj, SignatureStatus.PENDING, obj._pending)  # type: ignore[attr-defined]

    @admin.display(description="failed", ordering="_failed")
    def failed_count(self, obj: SigningPolicy) -> str:
        return self._signatures_link(obj, SignatureStatus.FAILED, obj._failed)  # type: ignore[attr-defined]

    @admin.display(description="signatures")
    def signature_counts(self, obj: SigningPolicy) -> str:
        return self.signature_summary(obj)

    @admin.display(description="signatures")
    def signature_summary(self, obj: SigningPolicy) -> str:
        return format_html(
            "{} signed, {} pending, {} failed",
            self.signed_count(obj),
            self.pending_count(obj),
            self.failed_count(obj),
        )

    # --- deleting: always through delete_policy, with the signature count -------------

    def delete_model(self, request: HttpRequest, obj: SigningPolicy) -> None:
        started = start_policy_deletion(policy=obj, actor=request.user)
        request._signing_operation = started.operation  # type: ignore[attr-defined]

    def response_delete(self, request: HttpRequest, obj_display: str, obj_id: Any) -> HttpResponse:
        """To the deletion's progress: the registry's .sig removals run in the background."""
        response = super().response_delete(request, obj_display, obj_id)
        operation = getattr(request, "_signing_operation", None)
        if operation is None or not isinstance(response, HttpResponseRedirect):
            return response
        return progress_redirect(operation)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[SigningPolicy]) -> None:
        for policy in queryset.select_related("namespace__instance"):
            start_policy_deletion(policy=policy, actor=request.user)

    def _delete_warnings(self, policies) -> list[tuple[SigningPolicy, int, str]]:
        found = []
        for policy in policies:
            count = signatures_removed_by_deleting(policy)
            found.append(
                (
                    policy,
                    count,
                    f"Deleting policy {policy.name} removes {count} signature(s) of namespace "
                    f"{policy.namespace.name} (instance {policy.namespace.instance.name}) and "
                    "their .sig artifacts in the registry; verification of those images will "
                    "fail.",
                )
            )
        return found

    def get_deleted_objects(self, objs, request: HttpRequest):
        """Lists the policies and counts their signatures instead of listing each one."""
        warnings = self._delete_warnings(objs)
        # Shown again, prominently, by the confirmation templates.
        request._signing_delete_warnings = [text for _, _, text in warnings]  # type: ignore[attr-defined]
        deleted = [
            f"Signing policy {policy.name} (namespace {policy.namespace.name} of instance "
            f"{policy.namespace.instance.name}): {count} signature(s) and their .sig artifacts"
            for policy, count, _ in warnings
        ]
        model_count = {
            SigningPolicy._meta.verbose_name_plural: len(warnings),
            Signature._meta.verbose_name_plural: sum(count for _, count, _ in warnings),
        }
        return deleted, model_count, set(), []

    def render_delete_form(self, request: HttpRequest, context: dict) -> HttpResponse:
        context["signing_delete_warnings"] = getattr(request, "_signing_delete_warnings", [])
        return super().render_delete_form(request, context)

    @admin.action(
        description="Delete selected signing policies (and their signatures)",
        permissions=["delete"],
    )
    def delete_selected(self, request: HttpRequest, queryset: QuerySet[SigningPolicy]):
        # Only the policies of namespaces the user operates (an in-scope reader's are kept).
        queryset = scope_model(queryset, request.user, perm="signing.delete_signingpolicy")
        response = django_delete_selected(self, request, queryset)
        if isinstance(response, TemplateResponse) and response.context_data is not None:
            response.context_data["signing_delete_warnings"] = getattr(
                request, "_signing_delete_warnings", []
            )
        return response
