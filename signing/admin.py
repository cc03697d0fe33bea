"""Admin for image signing: policies, signatures, and the signing parts of the registry pages.

Thin callers of ``signing.services`` (and ``signing.verification``): every write, sign,
re-sign, retry and delete goes through a service, and every refusal (a ``DomainError``)
becomes a form error or a message, never a 500. Changelists run a fixed number of
queries whatever the row count (joins, annotations, prefetches).

The registry admin does not know about signing: the tag and namespace pages here are
subclasses of ``registry.admin``'s, registered in their place (``signing`` comes after
``registry`` in ``INSTALLED_APPS``).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.contrib.admin.utils import quote, unquote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import (
    BooleanField,
    Count,
    Exists,
    ExpressionWrapper,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme

from accounts.scoping import (
    is_unscoped,
    model_scope_condition,
    scope_model,
    visible_namespaces,
)
from config.errors import DomainError
from config.ids import is_id
from kms import services as kms_services
from kms.models import KeyState, ServiceAuthorization
from registry import admin as registry_admin
from registry.models import Namespace, Tag
from signing import services, snippets
from signing.forms import REGION_ADVICE, SigningPolicyForm
from signing.models import Signature, SignatureStatus, SigningPolicy
from signing.verification import verify_image

SIGN_IMAGES = "signing.sign_images"
# Verifying reads the registry for each tag; a bigger selection is cut to this many.
VERIFY_LIMIT = 100
_ERROR_STYLE = "color:var(--error-fg,#ba2121);font-weight:bold"
_MUTED_STYLE = "color:var(--body-quiet-color,#666)"


def can_sign(request: HttpRequest) -> bool:
    return request.user.has_perm(SIGN_IMAGES)


def _service_authorized() -> Exists:
    return Exists(
        ServiceAuthorization.objects.filter(service=services.SERVICE, revoked_at__isnull=True)
    )


def _health_html(health: services.Health) -> str:
    if health.ok:
        return format_html("ok: {}", health.message)
    return format_html('<span style="{}">error: {}</span>', _ERROR_STYLE, health.message)


def sign_result_messages(result: services.SignRequestResult) -> list[tuple[int, str]]:
    """What a sign/re-sign request did, as (level, text) messages."""
    outcome = result.outcome
    done = []
    if outcome.signed:
        done.append(f"{outcome.signed} signed")
    if result.already_signed:
        done.append(f"{result.already_signed} already signed")
    if result.queued:
        done.append(f"{result.queued} queued for signing in the background")
    if outcome.skipped:
        done.append(f"{outcome.skipped} being signed by another worker")
    if result.no_policy:
        done.append(f"{result.no_policy} in a namespace without a signing policy")
    found: list[tuple[int, str]] = []
    if done or not outcome.failed:
        level = messages.SUCCESS if outcome.signed else messages.INFO
        found.append((level, "Images: " + (", ".join(done) or "nothing to sign") + "."))
    if outcome.failed:
        found.append((messages.ERROR, f"{outcome.failed} failed: " + "; ".join(outcome.failures)))
    return found


def _outcome_messages(outcome: services.SignOutcome) -> list[tuple[int, str]]:
    return sign_result_messages(services.SignRequestResult(outcome=outcome))


# --- verification snippets --------------------------------------------------------------


def key_file_name(policy: SigningPolicy) -> str:
    return snippets.public_key_file_name(policy)


def policy_json_snippet(policy: SigningPolicy) -> str:
    return snippets.verification_snippets(policy)["policy_json"]


def registries_d_snippet(policy: SigningPolicy) -> str:
    return snippets.verification_snippets(policy)["registries_d"]


def cosign_command(policy: SigningPolicy) -> str:
    return snippets.verification_snippets(policy)["cosign_command"]


# --- signing policies -------------------------------------------------------------------


class PolicyInstanceFilter(registry_admin.InstanceFilter):
    field_path = "namespace__instance_id"


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


def row_health(policy: SigningPolicy, *, authorized: bool) -> services.Health:
    """``services.policy_health`` for a changelist row: the grant is looked up once per page."""
    return services.policy_health(policy, authorized=authorized)


class PolicyChangeList(ChangeList):
    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        authorized = kms_services.is_service_authorized(services.SERVICE)
        for policy in self.result_list:
            policy._health = row_health(policy, authorized=authorized)


@admin.register(SigningPolicy)
class SigningPolicyAdmin(registry_admin.ScopedAdminMixin, admin.ModelAdmin):
    form = SigningPolicyForm
    list_display = [
        "name",
        "namespace_name",
        "instance_name",
        "key_alias",
        "region",
        "domain",
        "enabled",
        "health",
        "signed_count",
        "pending_count",
        "failed_count",
        "created_by",
        "created_at",
    ]
    list_display_links = ["name"]
    list_filter = [PolicyInstanceFilter, "disabled", PolicyHealthFilter]
    search_fields = ["name", "namespace__name"]
    search_help_text = "Search by policy or namespace name."
    actions = ["delete_selected", "resign_selected", "retry_failed_selected"]

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

    def has_sign_images_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None:
            return request.user.has_perm(SIGN_IMAGES, obj)
        return can_sign(request)

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

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        extra_context = {"region_advice": REGION_ADVICE, **(extra_context or {})}
        return super().add_view(request, form_url, extra_context)

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
            warnings = services.validate_policy(
                namespace=policy.namespace,
                name=policy.name,
                key=policy.key,
                domain=policy.domain,
            )
        except DomainError:
            warnings = []  # the health field says what is wrong
        signer = self.has_sign_images_permission(request, policy)
        return {
            "policy_warnings": warnings,
            "region_advice": REGION_ADVICE,
            "can_sign": signer,
            "resign_count": services.resign_candidates(policy).count() if signer else 0,
            "failed_count": policy._failed if signer else 0,  # type: ignore[attr-defined]
        }

    # --- columns and read-only fields ----------------------------------------------------

    @admin.display(description="namespace", ordering="namespace__name")
    def namespace_name(self, obj: SigningPolicy) -> str:
        return obj.namespace.name

    @admin.display(description="instance", ordering="namespace__instance__name")
    def instance_name(self, obj: SigningPolicy) -> str:
        return obj.namespace.instance.name

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
        health = getattr(obj, "_health", None) or services.policy_health(obj)
        return _health_html(health)

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
    def signature_summary(self, obj: SigningPolicy) -> str:
        return format_html(
            "{} signed, {} pending, {} failed",
            self.signed_count(obj),
            self.pending_count(obj),
            self.failed_count(obj),
        )

    @admin.display(description="public key (PEM)")
    def public_key(self, obj: SigningPolicy) -> str:
        url = reverse("admin:kms_key_public_key_pem", args=[quote(obj.key.pk)])
        return format_html(
            '<pre class="signing-public-key">{}</pre><p><a href="{}" download="{}">'
            "Download {}</a> (key {}, fingerprint {}…)</p>",
            obj.key.public_key_pem,
            url,
            key_file_name(obj),
            key_file_name(obj),
            obj.key.alias,
            obj.key.public_key_fingerprint[:16],
        )

    @admin.display(description="policy.json")
    def policy_json(self, obj: SigningPolicy) -> str:
        return format_html(
            "<pre>{}</pre><p>Save the public key as /etc/containers/keys/{}; merge this into "
            "/etc/containers/policy.json (its default rejects every other image). Users "
            "must pull by {}/{}/… for the identity check to pass.</p>",
            policy_json_snippet(obj),
            key_file_name(obj),
            obj.domain,
            obj.namespace.name,
        )

    @admin.display(description="registries.d")
    def registries_d(self, obj: SigningPolicy) -> str:
        return format_html(
            "<pre>{}</pre><p>In /etc/containers/registries.d/{}.yaml: look for signatures "
            "stored beside the images (cosign's .sig tags).</p>",
            registries_d_snippet(obj),
            obj.domain.replace(":", "_"),
        )

    @admin.display(description="cosign")
    def cosign_verify(self, obj: SigningPolicy) -> str:
        return format_html(
            "<pre>{}</pre><p>cosign checks the key and the digest, not the identity; "
            "the signatures are not in a transparency log, hence --insecure-ignore-tlog.</p>",
            cosign_command(obj),
        )

    # --- deleting: always through delete_policy, with the signature count -------------

    def delete_model(self, request: HttpRequest, obj: SigningPolicy) -> None:
        services.delete_policy(policy=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[SigningPolicy]) -> None:
        for policy in queryset.select_related("namespace__instance"):
            services.delete_policy(policy=policy)

    def _delete_warnings(self, policies) -> list[tuple[SigningPolicy, int, str]]:
        found = []
        for policy in policies:
            count = services.signatures_removed_by_deleting(policy)
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

    # --- re-sign and retry ----------------------------------------------------------------

    def _report(self, request: HttpRequest, prefix: str, found: list[tuple[int, str]]) -> None:
        for level, text in found:
            self.message_user(request, f"{prefix}: {text}", level)

    def _resign(self, request: HttpRequest, policy: SigningPolicy) -> None:
        candidates = services.resign_candidates(policy).count()
        if not candidates:
            self.message_user(
                request,
                f"Policy {policy.name}: every signature is already made with key "
                f"{policy.key.alias}; nothing to re-sign.",
                messages.INFO,
            )
            return
        try:
            result = services.resign_policy(policy=policy, actor=request.user)
        except DomainError as exc:
            self.message_user(request, f"Policy {policy.name}: {exc.message}", messages.ERROR)
            return
        self.log_change(request, policy, f"Re-signed {candidates} image(s) with the policy key.")
        self._report(
            request,
            f"Policy {policy.name}: re-sign with key {policy.key.alias}",
            sign_result_messages(result),
        )

    def _retry_failed(self, request: HttpRequest, policy: SigningPolicy) -> None:
        failed = list(policy.signatures.filter(status=SignatureStatus.FAILED))
        if not failed:
            self.message_user(
                request, f"Policy {policy.name}: no failed signatures.", messages.INFO
            )
            return
        outcome = services.retry_now(signatures=failed)
        self._report(request, f"Policy {policy.name}: retry", _outcome_messages(outcome))

    @admin.action(
        description="Re-sign images signed with an older key, with the current key",
        permissions=["sign_images"],
    )
    def resign_selected(self, request: HttpRequest, queryset: QuerySet[SigningPolicy]) -> None:
        for policy in scope_model(queryset, request.user, perm=SIGN_IMAGES):
            self._resign(request, policy)

    @admin.action(description="Retry failed signatures", permissions=["sign_images"])
    def retry_failed_selected(
        self, request: HttpRequest, queryset: QuerySet[SigningPolicy]
    ) -> None:
        for policy in scope_model(queryset, request.user, perm=SIGN_IMAGES):
            self._retry_failed(request, policy)

    def get_urls(self) -> list:
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<path:object_id>/resign/",
                self.admin_site.admin_view(self.resign_view),
                name="{}_{}_resign".format(*info),
            ),
            path(
                "<path:object_id>/retry-failed/",
                self.admin_site.admin_view(self.retry_failed_view),
                name="{}_{}_retry_failed".format(*info),
            ),
            *super().get_urls(),
        ]

    def _policy_for_operation(self, request: HttpRequest, object_id: str) -> SigningPolicy:
        if not self.has_sign_images_permission(request):
            raise PermissionDenied
        policy = self.get_object(request, unquote(object_id))
        if policy is None:
            raise Http404("No such signing policy.")
        if not self.has_sign_images_permission(request, policy):
            raise PermissionDenied  # in the user's scope, but read-only there
        return policy

    def _back_to(self, policy: SigningPolicy) -> HttpResponseRedirect:
        return HttpResponseRedirect(
            reverse("admin:signing_signingpolicy_change", args=[quote(policy.pk)])
        )

    def resign_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """GET: a confirmation page (the link in the key-change message); POST: re-sign."""
        policy = self._policy_for_operation(request, object_id)
        if request.method == "POST":
            self._resign(request, policy)
            return self._back_to(policy)
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET", "POST"])
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": policy,
            "title": f"Re-sign the images of namespace {policy.namespace.name}",
            "resign_count": services.resign_candidates(policy).count(),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/signing/signingpolicy/resign.html", context)

    def retry_failed_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        policy = self._policy_for_operation(request, object_id)
        self._retry_failed(request, policy)
        return self._back_to(policy)


# --- signatures ---------------------------------------------------------------------


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


def status_html(signature: Signature) -> str:
    if signature.status == SignatureStatus.FAILED:
        return format_html('<span style="{}">failed</span>', _ERROR_STYLE)
    if signature.status == SignatureStatus.SIGNED:
        return "signed ✓"
    return format_html('<span style="{}">pending</span>', _MUTED_STYLE)


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
        outcome = services.retry_now(signatures=list(rows))
        for level, text in _outcome_messages(outcome):
            self.message_user(request, text, level)


# --- tags: signature column, Sign button, bulk sign and verify --------------------------


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
        if value in SignatureStatus.values:
            return queryset.filter(has_policy, Exists(signatures.filter(status=value)))
        if value == "unsigned":
            return queryset.filter(has_policy).exclude(Exists(signatures))
        if value == "none":
            return queryset.exclude(has_policy)
        return queryset


def tag_policy(tag: Tag) -> SigningPolicy | None:
    policies = tag.repository.namespace.signing_policies.all()  # prefetched
    return policies[0] if policies else None


def tag_signature(tag: Tag, policy: SigningPolicy | None) -> Signature | None:
    if policy is None:
        return None
    return next((s for s in tag.manifest.signatures.all() if s.policy_id == policy.pk), None)


def tag_signature_html(tag: Tag) -> str:
    policy = tag_policy(tag)
    if policy is None:
        return format_html('<span style="{}">no policy</span>', _MUTED_STYLE)
    signature = tag_signature(tag, policy)
    if signature is None:
        suffix = " (policy disabled)" if policy.disabled else ""
        return format_html('<span style="{}">unsigned{}</span>', _MUTED_STYLE, suffix)
    if signature.status == SignatureStatus.FAILED:
        return format_html(
            '<span style="{}" title="{}">failed: {}</span>',
            _ERROR_STYLE,
            signature.failure_reason,
            signature.failure_reason[:160],
        )
    if signature.status == SignatureStatus.PENDING:
        return format_html('<span style="{}">pending</span>', _MUTED_STYLE)
    signed_at = (
        timezone.localtime(signature.signed_at).strftime("%Y-%m-%d %H:%M")
        if signature.signed_at
        else ""
    )
    html = format_html("signed ✓ ({}, {})", signature_key_label(signature, policy), signed_at)
    if signature.failure_code:  # a re-sign with a new key failed; the old one stands
        html = format_html(
            '{} <span style="{}" title="{}">re-sign failed</span>',
            html,
            _ERROR_STYLE,
            signature.failure_reason,
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


registry_admin_tag = registry_admin.TagAdmin
admin.site.unregister(Tag)


@admin.register(Tag)
class SigningTagAdmin(registry_admin_tag):
    """TCR's "Tag Management" list: the registry's tag page plus signing."""

    list_filter = [*registry_admin_tag.list_filter, SignatureStatusFilter]
    actions = ["sign_selected", "verify_selected"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Tag]:
        return (
            super()
            .get_queryset(request)
            .prefetch_related(
                Prefetch(
                    "manifest__signatures",
                    queryset=Signature.objects.defer("payload", "signature_value"),
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

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list:
        return [*super().get_fields(request, obj), "signature"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list:
        return [*super().get_readonly_fields(request, obj), "signature"]

    def get_list_display(self, request: HttpRequest) -> list:
        columns = [*super().get_list_display(request), "signature"]
        if can_sign(request):
            columns.append("operation")
        return columns

    def has_sign_images_permission(self, request: HttpRequest) -> bool:
        return can_sign(request)

    @admin.display(description="signature")
    def signature(self, obj: Tag) -> str:
        return tag_signature_html(obj)

    @admin.display(description="operation")
    def operation(self, obj: Tag) -> str:
        if not getattr(obj, "_can_sign", False):
            # Visible to this user but read-only for it (a reader membership there).
            return format_html('<span style="{}">read-only</span>', _MUTED_STYLE)
        # The changelist is itself a form: the button submits it (with its CSRF token) to
        # the sign URL instead of nesting a form in it.
        url = reverse("admin:registry_tag_sign", args=[quote(obj.pk)])
        return format_html(
            '<button type="submit" class="button signing-sign" formaction="{}" '
            'formmethod="post" formnovalidate title="Sign {}:{}">Sign</button>',
            url,
            obj.repository.name,
            obj.name,
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

    def sign_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The row's Sign button: sign the tag's image (and an index's children) now."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not (self.has_view_permission(request) and self.has_sign_images_permission(request)):
            raise PermissionDenied
        if not is_id(object_id):
            raise Http404("No such tag.")
        tag = get_object_or_404(
            scope_model(Tag.objects.all(), request.user).select_related(
                "repository__namespace", "manifest__repository__namespace"
            ),
            pk=int(object_id),
        )
        if not request.user.has_perm(SIGN_IMAGES, tag):
            raise PermissionDenied  # in the user's scope, but read-only there
        label = f"Tag {tag.repository.name}:{tag.name}"
        try:
            result = services.request_signing(
                manifests=[tag.manifest], trigger="manual", actor=request.user
            )
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
    def sign_selected(self, request: HttpRequest, queryset: QuerySet[Tag]) -> None:
        selected = queryset.count()
        tags = list(
            scope_model(queryset, request.user, perm=SIGN_IMAGES).select_related(
                "manifest__repository__namespace"
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
            return
        try:
            result = services.request_signing(
                manifests=[tag.manifest for tag in tags], trigger="manual", actor=request.user
            )
        except DomainError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return
        for level, text in sign_result_messages(result):
            self.message_user(request, f"{len(tags)} tag(s) selected. {text}", level)

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


# --- namespaces: policy column, filter, health --------------------------------------------


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


registry_admin_namespace = registry_admin.NamespaceAdmin
admin.site.unregister(Namespace)


@admin.register(Namespace)
class SigningNamespaceAdmin(registry_admin_namespace):
    list_display = [*registry_admin_namespace.list_display, "signing_policy"]
    list_filter = [*registry_admin_namespace.list_filter, SigningPolicyFilter]

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
            return format_html('<span style="{}">none</span>', _MUTED_STYLE)
        url = reverse("admin:signing_signingpolicy_change", args=[policy_id])
        state = "disabled" if obj._policy_disabled else "enabled"  # type: ignore[attr-defined]
        key_state = obj._policy_key_state  # type: ignore[attr-defined]
        if key_state != KeyState.ENABLED:
            return format_html(
                '<a href="{}">{}</a> <span style="{}">(key {})</span>',
                url,
                state,
                _ERROR_STYLE,
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
            _health_html(services.policy_health(policy)),
        )
