"""List filters of the signing admin pages (policies, signatures, tags, namespaces)."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Exists, OuterRef, Q

from accounts.scoping import scope_model
from config.ids import is_id
from kms.models import KeyState, ServiceAuthorization
from registry import admin as registry_admin
from signing.constants import SERVICE
from signing.models import Signature, SignatureStatus, SigningPolicy
from signing.selectors import in_flight


def _service_authorized() -> Exists:
    return Exists(ServiceAuthorization.objects.filter(service=SERVICE, revoked_at__isnull=True))


class PolicyInstanceFilter(registry_admin.InstanceFilter):
    field_path = "namespace__instance_id"


class PolicyStatusFilter(admin.SimpleListFilter):
    """Enabled or disabled (a filter on the ``disabled`` field would be titled
    "By disabled: Yes/No")."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("enabled", "Enabled"), ("disabled", "Disabled")]

    def queryset(self, request, queryset):
        if self.value() in ("enabled", "disabled"):
            return queryset.filter(disabled=self.value() == "disabled")
        return queryset


class PolicyHealthFilter(admin.SimpleListFilter):
    title = "health"
    parameter_name = "health"

    def lookups(self, request, model_admin):
        return [("ok", "OK"), ("error", "Error (key not usable or service not authorized)")]

    def queryset(self, request, queryset):
        ok = Q(key__state=KeyState.ENABLED) & Q(_service_authorized())
        if self.value() == "ok":
            return queryset.filter(ok)
        if self.value() == "error":
            return queryset.exclude(ok)
        return queryset


class SignaturePolicyFilter(admin.SimpleListFilter):
    title = "policy"
    parameter_name = "policy"

    def lookups(self, request, model_admin):
        return [
            (pk, f"{name} ({instance} / {namespace})")
            for pk, name, instance, namespace in scope_model(
                SigningPolicy.objects.all(), request.user
            ).values_list("pk", "name", "namespace__instance__name", "namespace__name")
        ]

    def queryset(self, request, queryset):
        if self.value() and is_id(self.value()):
            return queryset.filter(policy_id=int(self.value()))
        return queryset


class SignatureStatusFilter(admin.SimpleListFilter):
    title = "signature"
    parameter_name = "signature"

    def lookups(self, request, model_admin):
        return [
            ("signed", "Signed"),
            ("pending", "Pending"),
            ("failed", "Failed"),
            ("unsigned", "Unsigned"),
            ("none", "No policy"),
        ]

    def queryset(self, request, queryset):
        has_policy = Exists(
            SigningPolicy.objects.filter(namespace_id=OuterRef("repository__namespace_id"))
        )
        signatures = Signature.objects.filter(manifest_id=OuterRef("manifest_id"))
        value = self.value()
        if value == SignatureStatus.PENDING:
            # Pending also while an operation works on the row (a re-sign keeps the old
            # signature, and its status, until the new one is made).
            return queryset.filter(has_policy, Exists(signatures.filter(in_flight())))
        if value in SignatureStatus.values:
            return queryset.filter(has_policy, Exists(signatures.filter(status=value)))
        if value == "unsigned":
            return queryset.filter(has_policy).exclude(Exists(signatures))
        if value == "none":
            return queryset.exclude(has_policy)
        return queryset


class SigningPolicyFilter(admin.SimpleListFilter):
    """Like TCR's ``KmsSignPolicy`` filter on namespaces."""

    title = "signing policy"
    parameter_name = "signing_policy"

    def lookups(self, request, model_admin):
        return [("none", "None"), ("enabled", "Enabled"), ("disabled", "Disabled")]

    def queryset(self, request, queryset):
        policies = SigningPolicy.objects.filter(namespace_id=OuterRef("pk"))
        if self.value() == "none":
            return queryset.exclude(Exists(policies))
        if self.value() == "enabled":
            return queryset.filter(Exists(policies.filter(disabled=False)))
        if self.value() == "disabled":
            return queryset.filter(Exists(policies.filter(disabled=True)))
        return queryset
