"""Admin for registry instances: writes through ``registry.services.instances``; the
webhook token is shown once, on the page that answers the create or rotate request (it
is never stored in a session). Where and as whom Signet reaches the registry (backend
URL, credentials) is shown to instance editors only."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path

from config.errors import ValidationFailed
from config.forms import server_side_limits
from config.ids import is_id
from registry.admin.common import DeletesRecordsMixin, ScopedAdminMixin
from registry.models import AuthType, Instance
from registry.services.instance_rules import validate_instance_fields
from registry.services.instances import create_instance, delete_instance, update_instance
from registry.services.notifications import notifications_config, webhook_path
from registry.services.webhook_tokens import rotate_webhook_token

if TYPE_CHECKING:
    from typing import TypedDict

    from django_stubs_ext import WithAnnotations

    class _NamespaceCount(TypedDict):
        _namespace_count: int


ListDisplay = list[str | Callable[[Any], str | bool]]


def _apply_domain_error(form: forms.BaseForm, exc: ValidationFailed) -> None:
    for name, problems in exc.fields.items():
        target = name if name in form.fields else None
        for problem in problems:
            form.add_error(target, problem)
    if not exc.fields:
        form.add_error(None, exc.message)


# --- instances ------------------------------------------------------------------------


class InstanceForm(forms.ModelForm):
    region = forms.ChoiceField(choices=())
    backend_url = forms.URLField(
        max_length=255,
        assume_scheme="https",
        help_text="Where Signet reaches the registry API (may be an internal address).",
    )
    secret = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Password or token for the registry API. Stored encrypted and never shown "
        "again; leave blank to keep the stored one.",
    )
    clear_secret = forms.BooleanField(required=False, label="Remove the stored secret")
    custom_domains = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Other domain names users pull by, one per line (host[:port]).",
    )

    class Meta:
        model = Instance
        fields = [
            "name",
            "region",
            "description",
            "backend_url",
            "auth_type",
            "username",
            "secret_env",
            "default_domain",
        ]
        help_texts = {
            "name": "2-50 characters: lowercase letters, digits and '-', starting with a "
            "letter and ending with a letter or digit, like prod-registry. Cannot be changed "
            "later.",
            "description": "Optional, up to 255 characters.",
            "username": "Up to 128 characters.",
            # Help texts are HTML: the placeholder is escaped or the browser swallows it.
            "secret_env": "Instead of a stored secret: the name of an environment variable "
            "SIGNET_REGISTRY_SECRET_&lt;NAME&gt; holding it. It is only sent to the origin "
            "the operator declares in SIGNET_REGISTRY_ORIGIN_&lt;NAME&gt;.",
            "default_domain": "The domain name users pull by, host[:port] like "
            "registry.example.com or registry.internal:5000 (up to 261 characters).",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        server_side_limits(self.fields)
        region_field = self.fields["region"]
        assert isinstance(region_field, forms.ChoiceField)
        region_field.choices = [(region, region) for region in settings.KMS_REGIONS]
        if not self.instance.pk:
            self.fields["region"].initial = settings.KMS_DEFAULT_REGION
            del self.fields["clear_secret"]
        else:
            self.fields["custom_domains"].initial = "\n".join(self.instance.domain_names()[1:])

    def domain_list(self) -> list[str]:
        return [line.strip() for line in self.cleaned_data.get("custom_domains", "").splitlines()]

    def secret_change(self) -> str | None:
        """None keeps the stored secret, "" removes it, text replaces it."""
        if self.cleaned_data.get("secret"):
            return self.cleaned_data["secret"]
        if self.cleaned_data.get("clear_secret"):
            return ""
        return None

    def clean(self) -> dict[str, Any]:
        data = super().clean() or self.cleaned_data
        if self.errors:
            return data
        try:
            validate_instance_fields(
                name=data.get("name") if not self.instance.pk else None,
                region=data.get("region", ""),
                backend_url=data.get("backend_url", ""),
                auth_type=data.get("auth_type", ""),
                username=data.get("username", ""),
                secret=self.secret_change() if self.instance.pk else data.get("secret", ""),
                secret_env=data.get("secret_env", ""),
                default_domain=(data.get("default_domain") or "").strip().lower(),
                custom_domains=[d.lower() for d in self.domain_list() if d],
                has_stored_secret=self.instance.sealed_secret is not None,
                # Still the stored URL here: the form copies its data onto the instance
                # only after clean().
                current_backend_url=self.instance.backend_url if self.instance.pk else None,
                instance_id=self.instance.pk,
            )
        except ValidationFailed as exc:
            _apply_domain_error(self, exc)
        return data


# Shown to those who may change the instance only (readers see none of them).
_EDITOR_ONLY_FIELDS = frozenset(
    {
        "backend_url",
        "username",
        "secret",
        "clear_secret",
        "secret_env",
    }
)


@admin.register(Instance)
class InstanceAdmin(ScopedAdminMixin, DeletesRecordsMixin, admin.ModelAdmin):
    form = InstanceForm
    list_display = [
        "name",
        "region",
        "backend_url",
        "default_domain",
        "auth_type",
        "credentials",
        "namespace_count",
        "created_at",
    ]
    list_filter = ["region", "auth_type"]
    search_fields = ["name", "default_domain", "backend_url"]
    readonly_fields = ["webhook_url", "webhook_token_rotated_at", "created_at", "updated_at"]
    actions = ["rotate_webhook_token_action"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Instance]:
        return (
            super()
            .get_queryset(request)
            .annotate(_namespace_count=Count("namespaces", distinct=True))
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = list(super().get_readonly_fields(request, obj))
        return [*fields, "name"] if obj else []

    def _may_edit(self, request: HttpRequest, obj: Any = None) -> bool:
        """Where and as whom Signet reaches the registry is shown to instance editors only."""
        return self.has_change_permission(request, obj)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        fields: tuple[str, ...] = (
            "name",
            "region",
            "description",
            "backend_url",
            "auth_type",
            "username",
            "secret",
            "clear_secret",
            "secret_env",
            "default_domain",
            "custom_domains",
        )
        if obj is None:
            return tuple(f for f in fields if f != "clear_secret")
        if not self._may_edit(request, obj):
            fields = tuple(f for f in fields if f not in _EDITOR_ONLY_FIELDS)
        return (*fields, "webhook_url", "webhook_token_rotated_at", "created_at", "updated_at")

    def get_list_display(self, request: HttpRequest) -> ListDisplay:
        if self._may_edit(request):
            return list(self.list_display)
        return [
            "reader_credentials" if name == "credentials" else name
            for name in self.list_display
            if name not in _EDITOR_ONLY_FIELDS
        ]

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        # Searching by backend URL would let a reader probe it letter by letter.
        if self._may_edit(request):
            return list(self.search_fields)
        return [name for name in self.search_fields if name not in _EDITOR_ONLY_FIELDS]

    @admin.display(description="namespaces", ordering="_namespace_count")
    def namespace_count(self, obj: WithAnnotations[Instance, _NamespaceCount]) -> int:
        return obj._namespace_count

    @admin.display(description="credentials")
    def credentials(self, obj: Instance) -> str:
        if obj.auth_type == AuthType.NONE:
            return "-"
        if obj.secret_env:
            return f"from ${obj.secret_env}"
        return "stored (encrypted)" if obj.sealed_secret is not None else "missing"

    @admin.display(description="credentials")
    def reader_credentials(self, obj: Instance) -> str:
        if obj.auth_type == AuthType.NONE:
            return "-"
        return "set" if obj.has_secret else "missing"

    @admin.display(description="webhook URL")
    def webhook_url(self, obj: Instance) -> str:
        return webhook_path(instance=obj) if obj.pk else "-"

    # -- writes through the services -------------------------------------------------------

    def save_model(self, request: HttpRequest, obj: Instance, form: Any, change: bool) -> None:
        data = form.cleaned_data
        domains = form.domain_list()
        if change:
            update_instance(
                instance=obj,
                region=data["region"],
                description=data["description"],
                backend_url=data["backend_url"],
                auth_type=data["auth_type"],
                username=data["username"],
                secret=form.secret_change(),
                secret_env=data["secret_env"],
                default_domain=data["default_domain"],
                custom_domains=domains,
            )
            obj.refresh_from_db()
            return
        created, token = create_instance(
            name=data["name"],
            region=data["region"],
            description=data["description"],
            backend_url=data["backend_url"],
            auth_type=data["auth_type"],
            username=data["username"],
            secret=data["secret"],
            secret_env=data["secret_env"],
            default_domain=data["default_domain"],
            custom_domains=domains,
        )
        for model_field in Instance._meta.concrete_fields:
            setattr(obj, model_field.attname, getattr(created, model_field.attname))
        obj._state.adding = False
        obj._webhook_token = token  # type: ignore[attr-defined]  # shown once by response_add

    def delete_model(self, request: HttpRequest, obj: Instance) -> None:
        delete_instance(instance=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Instance]) -> None:
        for instance in queryset:
            delete_instance(instance=instance)

    def response_add(self, request: HttpRequest, obj: Instance, post_url_continue=None):
        token = getattr(obj, "_webhook_token", None)
        if token is None:
            return super().response_add(request, obj, post_url_continue)
        return self._token_page(request, obj, token, created=True)

    # -- the webhook token -----------------------------------------------------------------

    def _token_page(
        self, request: HttpRequest, instance: Instance, token: str, *, created: bool
    ) -> TemplateResponse:
        url = request.build_absolute_uri(webhook_path(instance=instance))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "instance": instance,
            "title": f"Webhook token for {instance.name}",
            "created": created,
            "webhook_url": url,
            "webhook_token": token,
            "notifications_config": notifications_config(
                instance=instance, token=token, webhook_url=url
            ),
        }
        response = TemplateResponse(request, "admin/registry/instance/webhook_token.html", context)
        response["Cache-Control"] = "no-store"
        return response

    def get_urls(self):
        return [
            path(
                "<path:object_id>/rotate-webhook-token/",
                self.admin_site.admin_view(self.rotate_webhook_token_view),
                name="registry_instance_rotate_webhook_token",
            ),
            *super().get_urls(),
        ]

    def rotate_webhook_token_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not is_id(object_id):
            raise Http404("No such instance.")
        instance = get_object_or_404(self.get_queryset(request), pk=int(object_id))
        if not self.has_change_permission(request, instance):
            raise PermissionDenied
        token = rotate_webhook_token(instance=instance)
        self.log_change(request, instance, "Rotated the webhook token.")
        return self._token_page(request, instance, token, created=False)

    @admin.action(description="Rotate the webhook token (one instance)", permissions=["change"])
    def rotate_webhook_token_action(self, request: HttpRequest, queryset: QuerySet[Instance]):
        if queryset.count() != 1:
            self.message_user(
                request,
                "Select exactly one instance: its new token is shown once.",
                messages.WARNING,
            )
            return None
        instance = queryset.get()
        token = rotate_webhook_token(instance=instance)
        self.log_change(request, instance, "Rotated the webhook token.")
        return self._token_page(request, instance, token, created=False)
