"""The signature records admin: read-only, with a retry action."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import OuterRef, Prefetch, QuerySet, Subquery
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from accounts.scoping import scope_model
from kms.models import Key
from registry import admin as registry_admin
from registry.models import Tag
from signing.admin.common import SIGN_IMAGES, can_sign, outcome_messages
from signing.admin.filters import SignaturePolicyFilter
from signing.models import Signature, SignatureStatus, SigningPolicy
from signing.selectors import waiting_seconds
from signing.services.requests import retry_now


def status_html(signature: Signature) -> str:
    """The status as the tag list shows it; a failure's code and reason in the title."""
    reason = (
        f"{signature.failure_code}: {signature.failure_reason}" if signature.failure_code else ""
    )
    text = "signed ✓" if signature.status == SignatureStatus.SIGNED else signature.status
    return format_html(
        '<span class="signature-status signature-{}" title="{}">{}</span>',
        signature.status,
        reason,
        text,
    )


def key_alias_subquery() -> Subquery:
    """The alias of the key a signature was made with (``key_id`` is not a foreign key:
    it outlives the key)."""
    return Subquery(Key.objects.filter(key_id=OuterRef("key_id")).values("alias")[:1])


def signature_key_label(signature: Signature, policy: SigningPolicy) -> str:
    """The alias of the key that made the signature (the policy's current one or an older
    one, read from the ``_key_alias`` annotation); the fingerprint only for a key that no
    longer exists."""
    if signature.key_id is None:
        return "-"
    if signature.key_id == policy.key_id:
        return policy.key.alias
    alias = getattr(signature, "_key_alias", None)
    if alias:
        return alias
    return f"deleted key {signature.key_fingerprint[:12]}…"


def signature_key_html(signature: Signature, policy: SigningPolicy) -> str:
    """The alias first, the fingerprint second (in the title), and whether it is an older
    key than the policy's."""
    label = signature_key_label(signature, policy)
    if signature.key_id is None:
        return label
    older = signature.key_id != policy.key_id
    return format_html(
        '<span class="signature-key" title="Key fingerprint {}">{}</span>{}',
        signature.key_fingerprint or "unknown",
        label,
        mark_safe(' <span class="signature-older-key">(older key)</span>') if older else "",
    )


@admin.register(Signature)
class SignatureAdmin(registry_admin.ScopedAdminMixin, admin.ModelAdmin):
    """Records only: signatures are made by signing, removed with their policy or image."""

    # Status (with the failure reason on hover and expandable) and the image first; the
    # attempts, who triggered it and the payload are on the detail page.
    list_display = [
        "status_column",
        "image",
        "digest_short",
        "key_column",
        "trigger",
        "waiting",
        "signed_at",
        "updated_at",
    ]
    list_display_links = ["status_column", "image"]
    list_filter = ["status", "trigger", SignaturePolicyFilter]
    list_select_related = [
        "policy__key",
        "policy__namespace__instance",
        "manifest__repository",
        "triggered_by",
    ]
    search_fields = ["manifest__repository__name", "manifest__digest"]
    search_help_text = "Search by repository or digest."

    class Media:
        css = registry_admin.ADMIN_CSS

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
            .annotate(_key_alias=key_alias_subquery())
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
        if obj.status != SignatureStatus.FAILED and not obj.failure_code:
            return status_html(obj)
        return format_html(
            '{}<details class="signature-reason"><summary>why</summary>{}</details>',
            status_html(obj),
            self.failure(obj),
        )

    @admin.display(description="image", ordering="manifest__repository__name")
    def image(self, obj: Signature) -> str:
        tags = self.tag_names(obj)
        repository = obj.manifest.repository.name
        return repository if tags == "-" else f"{repository}:{tags}"

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
        return signature_key_html(obj, obj.policy)

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
