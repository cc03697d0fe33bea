"""The registry's tag page with signing: a signature column, a Sign button, bulk sign
and verify. Registered over registry's in ``signing.admin``."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import quote
from django.core.exceptions import PermissionDenied
from django.db.models import BooleanField, ExpressionWrapper, Prefetch, QuerySet, Value
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
)
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme

from accounts.scoping import model_scope_condition, scope_model
from config.errors import DomainError
from config.ids import is_id
from registry import admin as registry_admin
from registry.models import Tag
from signing.admin.common import (
    MUTED_STYLE,
    SIGN_IMAGES,
    can_sign,
)
from signing.admin.filters import SignatureStatusFilter
from signing.admin.operation import operation_messages, progress_redirect
from signing.admin.signature import key_alias_subquery, signature_key_html, signature_key_label
from signing.models import Signature, SignatureStatus, SigningPolicy
from signing.services.operations import start_signing
from signing.services.requests import request_signing
from signing.verification import verify_image

# Verifying reads the registry for each tag; a bigger selection is cut to this many.
VERIFY_LIMIT = 100


def tag_policy(tag: Tag) -> SigningPolicy | None:
    policies = tag.repository.namespace.signing_policies.all()  # prefetched
    return policies[0] if policies else None


def tag_signature(tag: Tag, policy: SigningPolicy | None) -> Signature | None:
    if policy is None:
        return None
    return next((s for s in tag.manifest.signatures.all() if s.policy_id == policy.pk), None)


def _status_span(status: str, text: str, title: str = "", element_id: str = "") -> str:
    """The signature cell's status, the same on the list and the tag page (the browser
    tests rely on these classes)."""
    return format_html(
        '<span{} class="signature-status signature-{}" title="{}">{}</span>',
        format_html(' id="{}"', element_id) if element_id else "",
        status,
        title,
        text,
    )


def _reason_details(summary: str, reason: str) -> str:
    """A failure reason that expands in place (the title shows it on hover too)."""
    return format_html(
        '<details class="signature-reason"><summary>{}</summary>{}</details>', summary, reason
    )


def tag_signature_html(tag: Tag, *, element_id: str = "") -> str:
    policy = tag_policy(tag)
    if policy is None:
        return _status_span(
            "no-policy", "no policy", "The namespace has no signing policy.", element_id
        )
    signature = tag_signature(tag, policy)
    if signature is None:
        title = "Policy disabled: nothing is signed on push." if policy.disabled else ""
        text = "unsigned (policy disabled)" if policy.disabled else "unsigned"
        return _status_span("unsigned", text, title, element_id)
    if signature.status == SignatureStatus.FAILED:
        reason = f"{signature.failure_code}: {signature.failure_reason}"
        return format_html(
            "{}{}",
            _status_span("failed", "failed", reason, element_id),
            _reason_details("why", reason),
        )
    if signature.status == SignatureStatus.PENDING:
        return _status_span("pending", "pending", "Waiting to be signed.", element_id)
    label = signature_key_label(signature, policy)
    title = f"Signed with key {label} on {registry_admin.when(signature.signed_at)}"
    html = format_html(
        '{}<span class="signature-detail">{}</span>',
        _status_span("signed", "signed ✓", title, element_id),
        signature_key_html(signature, policy),
    )
    if signature.failure_code:  # a re-sign with a new key failed; the old one stands
        html = format_html(
            "{}{}",
            html,
            _reason_details("re-sign failed", signature.failure_reason),
        )
    return html


def _may_sign(request: HttpRequest) -> Any:
    """Per row: may this user sign the tag? (Decides the row's Sign button, in SQL.)"""
    condition = model_scope_condition(Tag, request.user, perm=SIGN_IMAGES)
    if condition is None:
        return Value(True)
    if not can_sign(request):
        return Value(False)
    return ExpressionWrapper(condition, output_field=BooleanField())


class SigningTagAdmin(registry_admin.TagAdmin):
    """TCR's "Tag Management" list: the registry's tag page plus signing."""

    list_filter = [*registry_admin.TagAdmin.list_filter, SignatureStatusFilter]
    actions = ["sign_selected", "verify_selected"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Tag]:
        return (
            super()
            .get_queryset(request)
            .prefetch_related(
                Prefetch(
                    "manifest__signatures",
                    queryset=Signature.objects.defer("payload", "signature_value").annotate(
                        _key_alias=key_alias_subquery()
                    ),
                ),
                Prefetch(
                    "repository__namespace__signing_policies",
                    queryset=SigningPolicy.objects.select_related("key").defer(
                        "key__sealed_private_key"
                    ),
                ),
            )
            .annotate(_can_sign=_may_sign(request))
        )

    def pull_domain(self, obj: Tag) -> str:
        """The domain the policy signs for: users pull by it to verify."""
        policy = tag_policy(obj)
        return policy.domain if policy is not None else super().pull_domain(obj)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list:
        fields = list(super().get_fields(request, obj))
        extra = ["signature_status", "operation"] if can_sign(request) else ["signature_status"]
        return [*fields[:1], *extra, *fields[1:]]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list:
        return [*super().get_readonly_fields(request, obj), "signature_status", "operation"]

    def get_list_display(self, request: HttpRequest) -> list:
        # repository:tag, its signature and the Sign button first: visible without
        # scrolling at 1280 px; digest, media type and push date after, compact.
        columns = list(super().get_list_display(request))
        signing = ["signature", "operation"] if can_sign(request) else ["signature"]
        return [*columns[:1], *signing, *columns[1:]]

    def has_sign_images_permission(self, request: HttpRequest) -> bool:
        return can_sign(request)

    @admin.display(description="signature")
    def signature(self, obj: Tag) -> str:
        return tag_signature_html(obj)

    @admin.display(description="signature")
    def signature_status(self, obj: Tag) -> str:
        return tag_signature_html(obj, element_id="signature-status")

    @admin.display(description="sign")
    def operation(self, obj: Tag) -> str:
        if not getattr(obj, "_can_sign", False):
            # Visible to this user but read-only for it (a reader membership there).
            return format_html('<span style="{}">read-only</span>', MUTED_STYLE)
        policy = tag_policy(obj)
        signature = tag_signature(obj, policy)
        signed = signature is not None and signature.status == SignatureStatus.SIGNED
        # The changelist and the change page are themselves forms: the button submits
        # them (with their CSRF token) to the sign URL instead of nesting a form in them.
        url = reverse("admin:registry_tag_sign", args=[quote(obj.pk)])
        title = (
            f"Sign {obj.repository.name}:{obj.name} again if its signature is not made with "
            "the policy's current key and domain"
            if signed
            else f"Sign {obj.repository.name}:{obj.name}"
        )
        return format_html(
            '<button type="submit" class="button sign-button" formaction="{}" '
            'formmethod="post" formnovalidate title="{}">{}</button>',
            url,
            title,
            "Re-sign" if signed else "Sign",
        )

    def get_urls(self) -> list:
        return [
            path(
                "<path:object_id>/sign/",
                self.admin_site.admin_view(self.sign_view),
                name="registry_tag_sign",
            ),
            *super().get_urls(),
        ]

    def _back(self, request: HttpRequest) -> HttpResponseRedirect:
        referer = request.headers.get("referer", "")
        if referer and url_has_allowed_host_and_scheme(
            referer, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            return HttpResponseRedirect(referer)
        return HttpResponseRedirect(reverse("admin:registry_tag_changelist"))

    def _visible_tag(self, request: HttpRequest, object_id: str) -> Tag:
        if not self.has_view_permission(request):
            raise PermissionDenied
        if not is_id(object_id):
            raise Http404("No such tag.")
        return get_object_or_404(
            scope_model(Tag.objects.all(), request.user).select_related(
                "repository__namespace", "manifest__repository__namespace"
            ),
            pk=int(object_id),
        )

    def _to_tag_page(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """A link to (or a reload of) the sign URL signs nothing: it goes to the tag's
        page, which has the Sign button for those who may sign."""
        tag = self._visible_tag(request, object_id)
        label = f"Tag {tag.repository.name}:{tag.name}"
        if request.user.has_perm(SIGN_IMAGES, tag):
            text = f"{label}: nothing signed: use the Sign button on this page to sign it."
        else:
            text = f"{label}: nothing signed: signing here needs the operator role."
        self.message_user(request, text, messages.WARNING)
        return HttpResponseRedirect(reverse("admin:registry_tag_change", args=[quote(tag.pk)]))

    def sign_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The row's Sign button: sign the tag's image (and an index's children) now."""
        if request.method != "POST":
            return self._to_tag_page(request, object_id)
        if not (self.has_view_permission(request) and self.has_sign_images_permission(request)):
            raise PermissionDenied
        tag = self._visible_tag(request, object_id)
        if not request.user.has_perm(SIGN_IMAGES, tag):
            raise PermissionDenied  # in the user's scope, but read-only there
        label = f"Tag {tag.repository.name}:{tag.name}"
        try:
            result = request_signing(manifests=[tag.manifest], trigger="manual", actor=request.user)
        except DomainError as exc:
            prefix = "no policy" if exc.code == "NoSigningPolicy" else "not signed"
            self.message_user(request, f"{label}: {prefix}: {exc.message}", messages.ERROR)
            return self._back(request)
        outcome = result.outcome
        if outcome.failed:
            self.message_user(
                request, f"{label}: failed: {'; '.join(outcome.failures)}", messages.ERROR
            )
        elif outcome.signed:
            self.message_user(
                request, f"{label}: signed ({outcome.signed} manifest(s)).", messages.SUCCESS
            )
        elif result.queued or outcome.skipped:
            self.message_user(request, f"{label}: signing in the background.", messages.INFO)
        else:
            self.message_user(request, f"{label}: already signed.", messages.INFO)
        if outcome.signed:
            self.log_change(request, tag, f"Signed ({outcome.signed} manifest(s)).")
        return self._back(request)

    @admin.action(description="Sign selected", permissions=["sign_images"])
    def sign_selected(
        self, request: HttpRequest, queryset: QuerySet[Tag]
    ) -> HttpResponseRedirect | None:
        """Starts an operation and shows its progress at once; the workers sign."""
        selected = queryset.count()
        tags = list(
            scope_model(queryset, request.user, perm=SIGN_IMAGES).select_related(
                "manifest__repository__namespace__instance"
            )
        )
        if len(tags) < selected:
            self.message_user(
                request,
                f"{selected - len(tags)} selected tag(s) are in namespaces you may "
                "not sign in; they were left alone.",
                messages.WARNING,
            )
        if not tags:
            return None
        try:
            started = start_signing(manifests=[tag.manifest for tag in tags], actor=request.user)
        except DomainError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return None
        for level, text in operation_messages(started):
            self.message_user(request, f"{len(tags)} tag(s) selected. {text}", level)
        return progress_redirect(started.operation)

    @admin.action(description="Verify selected", permissions=["view"])
    def verify_selected(self, request: HttpRequest, queryset: QuerySet[Tag]) -> None:
        tags = list(queryset.order_by("repository__name", "name")[: VERIFY_LIMIT + 1])
        if len(tags) > VERIFY_LIMIT:
            tags = tags[:VERIFY_LIMIT]
            self.message_user(
                request, f"Only the first {VERIFY_LIMIT} tags were verified.", messages.WARNING
            )
        for tag in tags:
            name = f"{tag.repository.name}:{tag.name}"
            label = f"Tag {name}"
            policy = tag_policy(tag)
            if policy is None:
                self.message_user(
                    request,
                    f"{label}: no signing policy, nothing to verify against.",
                    messages.WARNING,
                )
                continue
            try:
                result = verify_image(image=f"{policy.domain}/{name}")
            except DomainError as exc:
                self.message_user(request, f"{label}: not verified: {exc.message}", messages.ERROR)
                continue
            if result.verified:
                self.message_user(
                    request,
                    f"{label}: verified ({result.digest}). {' '.join(result.reasons)}",
                    messages.SUCCESS,
                )
            else:
                self.message_user(
                    request,
                    f"{label}: not verified. {' '.join(result.reasons)}",
                    messages.ERROR,
                )
