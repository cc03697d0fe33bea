"""The signature records admin: read-only, with a retry action."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Prefetch, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from accounts.scoping import scope_model
from registry import admin as registry_admin
from registry.models import Tag
from signing.admin.common import ERROR_STYLE, MUTED_STYLE, SIGN_IMAGES, can_sign, outcome_messages
from signing.admin.filters import SignaturePolicyFilter
from signing.models import Signature, SignatureStatus, SigningPolicy
from signing.selectors import waiting_seconds
from signing.services.requests import retry_now


def status_html(signature: Signature) -> str:
    if signature.status == SignatureStatus.FAILED:
        return format_html('<span style="{}">failed</span>', ERROR_STYLE)
    if signature.status == SignatureStatus.SIGNED:
        return "signed ✓"
    return format_html('<span style="{}">pending</span>', MUTED_STYLE)


def signature_key_label(signature: Signature, policy: SigningPolicy) -> str:
    """The alias when the policy's current key made it, else the key's fingerprint."""
    if signature.key_id is None:
        return "-"
    if signature.key_id == policy.key_id:
        return policy.key.alias
    return f"older key {signature.key_fingerprint[:12]}…"


@admin.register(Signature)
class SignatureAdmin(registry_admin.ScopedAdminMixin, admin.ModelAdmin):
    """Records only: signatures are made by signing, removed with their policy or image."""

    list_display = [
        "status_column",
        "repository_name",
        "tag_names",
        "digest_short",
        "key_column",
        "trigger",
        "attempts",
        "waiting",
        "failure",
        "signed_at",
        "triggered_by",
        "updated_at",
    ]
    list_display_links = ["status_column", "repository_name"]
    list_filter = ["status", "trigger", SignaturePolicyFilter]
    list_select_related = [
        "policy__key",
        "policy__namespace__instance",
        "manifest__repository",
        "triggered_by",
    ]
    search_fields = ["manifest__repository__name", "manifest__digest"]
    search_help_text = "Search by repository or digest."
    actions = ["retry_selected"]
    fields = readonly_fields = (
        "status_column",
        "policy",
        "repository_name",
        "tag_names",
        "digest_short",
        "key_column",
        "key_id",
        "key_fingerprint",
        "algorithm",
        "docker_reference",
        "payload_text",
        "signature_value",
        "sig_manifest_digest",
        "trigger",
        "triggered_by",
        "attempts",
        "waiting",
        "failure",
        "next_attempt_at",
        "signed_at",
        "created_at",
        "updated_at",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Signature]:
        return (
            super()
            .get_queryset(request)
            .defer("policy__key__sealed_private_key")
            .prefetch_related(
                Prefetch("manifest__tags", queryset=Tag.objects.only("id", "name", "manifest"))
            )
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_sign_images_permission(self, request: HttpRequest) -> bool:
        return can_sign(request)

    @admin.display(description="status", ordering="status")
    def status_column(self, obj: Signature) -> str:
        return status_html(obj)

    @admin.display(description="waiting", ordering="-created_at")
    def waiting(self, obj: Signature) -> str:
        """How long a pending row has waited to be signed; empty for the others."""
        seconds = waiting_seconds(obj)
        if seconds is None:
            return ""
        if seconds < 120:
            return f"{seconds:.0f} s"
        if seconds < 7200:
            return f"{seconds / 60:.0f} min"
        return f"{seconds / 3600:.0f} h"

    @admin.display(description="repository", ordering="manifest__repository__name")
    def repository_name(self, obj: Signature) -> str:
        return obj.manifest.repository.name

    @admin.display(description="tags")
    def tag_names(self, obj: Signature) -> str:
        return ", ".join(sorted(tag.name for tag in obj.manifest.tags.all())) or "-"

    @admin.display(description="digest", ordering="manifest__digest")
    def digest_short(self, obj: Signature) -> str:
        return registry_admin.digest_html(obj.manifest.digest)

    @admin.display(description="key")
    def key_column(self, obj: Signature) -> str:
        return signature_key_label(obj, obj.policy)

    @admin.display(description="failure")
    def failure(self, obj: Signature) -> str:
        if not obj.failure_code:
            return "-"
        return format_html(
            '<span title="{}">{}: {}</span>',
            obj.failure_reason,
            obj.failure_code,
            obj.failure_reason[:200],
        )

    @admin.display(description="payload")
    def payload_text(self, obj: Signature) -> str:
        if not obj.payload:
            return "-"
        return format_html("<pre>{}</pre>", bytes(obj.payload).decode("utf-8", "replace"))

    @admin.action(description="Retry selected signatures now", permissions=["sign_images"])
    def retry_selected(self, request: HttpRequest, queryset: QuerySet[Signature]) -> None:
        rows = scope_model(queryset, request.user, perm=SIGN_IMAGES)
        rows = rows.select_related(None).prefetch_related(None).only("id")
        outcome = retry_now(signatures=list(rows))
        for level, text in outcome_messages(outcome):
            self.message_user(request, text, level)
