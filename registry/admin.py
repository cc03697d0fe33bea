"""Admin for registry instances and what Signet recorded from them.

Writes go through ``registry.services``. Repositories, manifests, tags and events come
from the registry and are read-only here. Every changelist runs a fixed number of
queries whatever the row count (``list_select_related``, annotations, one-query filters).
Credentials and the webhook token hash are never shown; the token itself is shown once,
on the page that answers the create or rotate request (it is never stored in a session).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.html import format_html

from accounts.scoping import scope_model, visible_instances, visible_namespaces
from config.errors import ValidationFailed
from config.ids import is_id
from registry import services
from registry.models import (
    AuthType,
    Instance,
    Manifest,
    ManifestReference,
    Namespace,
    RegistryEvent,
    Repository,
    Tag,
    TagHistory,
    short_digest,
)

_COPY_JS = (
    "navigator.clipboard.writeText(this.dataset.copy)"
    ".then(()=>{this.textContent='Copied'},()=>{this.textContent='Copy failed'})"
)


def digest_html(digest: str) -> str:
    """The short digest, the full one in its title, and a button copying the full one."""
    if not digest:
        return "-"
    return format_html(
        '<code title="{}">{}</code> <button type="button" class="button" data-copy="{}" '
        'onclick="{}" title="Copy the full digest" style="padding:1px 6px">Copy</button>',
        digest,
        short_digest(digest),
        digest,
        _COPY_JS,
    )


def _apply_domain_error(form: forms.BaseForm, exc: ValidationFailed) -> None:
    for name, problems in exc.fields.items():
        target = name if name in form.fields else None
        for problem in problems:
            form.add_error(target, problem)
    if not exc.fields:
        form.add_error(None, exc.message)


# --- one-query list filters -----------------------------------------------------------


class InstanceFilter(admin.SimpleListFilter):
    title = "instance"
    parameter_name = "instance"
    field_path = ""  # set per admin: the lookup path to the instance id

    def lookups(self, request, model_admin):
        instances = visible_instances(request.user)
        return list(instances.order_by("name").values_list("pk", "name"))

    def queryset(self, request, queryset):
        if self.value() and is_id(self.value()):
            return queryset.filter(**{self.field_path: int(self.value())})
        return queryset


class NamespaceFilter(admin.SimpleListFilter):
    title = "namespace"
    parameter_name = "namespace"
    field_path = ""

    def lookups(self, request, model_admin):
        namespaces = visible_namespaces(request.user).order_by("instance__name", "name")
        instance = request.GET.get("instance")
        if instance and is_id(instance):
            namespaces = namespaces.filter(instance_id=int(instance))
        return [
            (pk, f"{instance_name} / {name}")
            for pk, instance_name, name in namespaces.values_list("pk", "instance__name", "name")
        ]

    def queryset(self, request, queryset):
        if self.value() and is_id(self.value()):
            return queryset.filter(**{self.field_path: int(self.value())})
        return queryset


def _filters(instance_path: str, namespace_path: str | None = None) -> list[Any]:
    filters: list[Any] = [type("ByInstance", (InstanceFilter,), {"field_path": instance_path})]
    if namespace_path:
        filters.append(type("ByNamespace", (NamespaceFilter,), {"field_path": namespace_path}))
    return filters


class ScopedAdminMixin:
    """Only the rows of the instances (and namespaces) granted to the user
    (``accounts.scoping``; superusers see all); other rows do not exist for it."""

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return scope_model(super().get_queryset(request), request.user)  # type: ignore[misc]


# Rows that go with their parent: deleting an instance or namespace through the services
# removes them, so the user needs no delete permission on these read-only models.
_RECORDED_MODELS = (Repository, Manifest, ManifestReference, Tag, TagHistory, RegistryEvent)


class DeletesRecordsMixin:
    def get_deleted_objects(self, objs, request):
        deleted, counts, perms_needed, protected = super().get_deleted_objects(  # type: ignore[misc]
            objs, request
        )
        recorded = {str(model._meta.verbose_name) for model in _RECORDED_MODELS}
        return deleted, counts, {name for name in perms_needed if name not in recorded}, protected


class ReadOnlyAdmin(ScopedAdminMixin, admin.ModelAdmin):
    """Records that come from the registry: viewable, never edited by hand."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


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
            "secret_env": "Instead of a stored secret: the name of an environment variable "
            "SIGNET_REGISTRY_SECRET_<NAME> holding it. It is only sent to the origin the "
            "operator declares in SIGNET_REGISTRY_ORIGIN_<NAME>.",
            "default_domain": "The domain name users pull by, like registry.example.com.",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
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
            services.validate_instance_fields(
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
        fields = (
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

    def get_list_display(self, request: HttpRequest) -> list[str]:
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
    def namespace_count(self, obj: Instance) -> int:
        return obj._namespace_count  # type: ignore[attr-defined]

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
        return services.webhook_path(instance=obj) if obj.pk else "-"

    # -- writes through the services -------------------------------------------------------

    def save_model(self, request: HttpRequest, obj: Instance, form: Any, change: bool) -> None:
        data = form.cleaned_data
        domains = form.domain_list()
        if change:
            services.update_instance(
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
        created, token = services.create_instance(
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
        services.delete_instance(instance=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Instance]) -> None:
        for instance in queryset:
            services.delete_instance(instance=instance)

    def response_add(self, request: HttpRequest, obj: Instance, post_url_continue=None):
        token = getattr(obj, "_webhook_token", None)
        if token is None:
            return super().response_add(request, obj, post_url_continue)
        return self._token_page(request, obj, token, created=True)

    # -- the webhook token -----------------------------------------------------------------

    def _token_page(
        self, request: HttpRequest, instance: Instance, token: str, *, created: bool
    ) -> TemplateResponse:
        url = request.build_absolute_uri(services.webhook_path(instance=instance))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "instance": instance,
            "title": f"Webhook token for {instance.name}",
            "created": created,
            "webhook_url": url,
            "webhook_token": token,
            "notifications_config": services.notifications_config(
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
        token = services.rotate_webhook_token(instance=instance)
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
        token = services.rotate_webhook_token(instance=instance)
        self.log_change(request, instance, "Rotated the webhook token.")
        return self._token_page(request, instance, token, created=False)


# --- namespaces -----------------------------------------------------------------------


@admin.register(Namespace)
class NamespaceAdmin(ScopedAdminMixin, DeletesRecordsMixin, admin.ModelAdmin):
    list_display = ["name", "instance", "description", "repository_count", "created_at"]
    list_filter = _filters("instance_id")
    list_select_related = ["instance"]
    search_fields = ["name", "description"]
    # Also orders the autocomplete lookups (paginated: they need a stable order).
    ordering = ["instance__name", "name"]
    fields = ["instance", "name", "description", "created_at"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Namespace]:
        return (
            super()
            .get_queryset(request)
            .annotate(_repository_count=Count("repositories", distinct=True))
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return ["instance", "name", "created_at"] if obj else ["created_at"]

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any):
        if db_field.name == "instance":  # only the instances granted to the user
            kwargs["queryset"] = visible_instances(request.user).order_by("name")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    @admin.display(description="repositories", ordering="_repository_count")
    def repository_count(self, obj: Namespace) -> int:
        return obj._repository_count  # type: ignore[attr-defined]

    def save_model(self, request: HttpRequest, obj: Namespace, form: Any, change: bool) -> None:
        if change:
            services.update_namespace(namespace=obj, description=obj.description)
            return
        created = services.create_namespace(
            instance=obj.instance, name=obj.name, description=obj.description
        )
        obj.pk = created.pk
        obj.created_at = created.created_at
        obj._state.adding = False

    def delete_model(self, request: HttpRequest, obj: Namespace) -> None:
        services.delete_namespace(namespace=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Namespace]) -> None:
        for namespace in queryset.select_related("instance"):
            services.delete_namespace(namespace=namespace)


# --- recorded from the registry ---------------------------------------------------------


@admin.register(Repository)
class RepositoryAdmin(ReadOnlyAdmin):
    list_display = ["name", "namespace", "instance_name", "tag_count", "created_at"]
    list_filter = _filters("namespace__instance_id", "namespace_id")
    list_select_related = ["namespace__instance"]
    search_fields = ["name"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Repository]:
        return super().get_queryset(request).annotate(_tag_count=Count("tags", distinct=True))

    @admin.display(description="instance", ordering="namespace__instance__name")
    def instance_name(self, obj: Repository) -> str:
        return obj.namespace.instance.name

    @admin.display(description="tags", ordering="_tag_count")
    def tag_count(self, obj: Repository) -> int:
        return obj._tag_count  # type: ignore[attr-defined]


class TagHistoryInline(admin.TabularInline):
    model = TagHistory
    fields = readonly_fields = ("moved_at", "from_short", "to_short")
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="from")
    def from_short(self, obj: TagHistory) -> str:
        return digest_html(obj.from_digest) if obj.from_digest else "(first push)"

    @admin.display(description="to")
    def to_short(self, obj: TagHistory) -> str:
        return digest_html(obj.to_digest)


@admin.register(Tag)
class TagAdmin(ReadOnlyAdmin):
    list_display = [
        "repository_name",
        "name",
        "digest_short",
        "media_type",
        "pushed_at",
        "updated_at",
    ]
    list_display_links = ["repository_name", "name"]
    list_filter = _filters("repository__namespace__instance_id", "repository__namespace_id")
    list_select_related = ["repository__namespace__instance", "manifest"]
    search_fields = ["repository__name", "name"]
    fields = readonly_fields = (
        "repository_name",
        "name",
        "digest_short",
        "media_type",
        "pushed_at",
        "updated_at",
    )
    inlines = [TagHistoryInline]
    date_hierarchy = None

    @admin.display(description="repository", ordering="repository__name")
    def repository_name(self, obj: Tag) -> str:
        return obj.repository.name

    @admin.display(description="digest", ordering="manifest__digest")
    def digest_short(self, obj: Tag) -> str:
        return digest_html(obj.manifest.digest)

    @admin.display(description="media type", ordering="manifest__media_type")
    def media_type(self, obj: Tag) -> str:
        return obj.manifest.media_type


class ManifestReferenceInline(admin.TabularInline):
    model = ManifestReference
    fk_name = "parent"
    fields = readonly_fields = ("child_short", "platform", "media_type", "size", "child")
    extra = 0
    can_delete = False
    verbose_name = "child manifest"
    verbose_name_plural = "child manifests (image index)"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="digest")
    def child_short(self, obj: ManifestReference) -> str:
        return digest_html(obj.child_digest)


@admin.register(Manifest)
class ManifestAdmin(ReadOnlyAdmin):
    list_display = [
        "repository_name",
        "digest_short",
        "media_type",
        "size",
        "tag_count",
        "pushed_at",
    ]
    list_display_links = ["repository_name"]
    list_filter = [
        *_filters("repository__namespace__instance_id", "repository__namespace_id"),
        "media_type",
    ]
    list_select_related = ["repository__namespace__instance"]
    search_fields = ["repository__name", "digest"]
    fields = readonly_fields = (
        "repository_name",
        "digest_short",
        "media_type",
        "size",
        "pushed_at",
    )
    inlines = [ManifestReferenceInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Manifest]:
        return super().get_queryset(request).annotate(_tag_count=Count("tags", distinct=True))

    @admin.display(description="repository", ordering="repository__name")
    def repository_name(self, obj: Manifest) -> str:
        return obj.repository.name

    @admin.display(description="digest", ordering="digest")
    def digest_short(self, obj: Manifest) -> str:
        return digest_html(obj.digest)

    @admin.display(description="tags", ordering="_tag_count")
    def tag_count(self, obj: Manifest) -> int:
        return obj._tag_count  # type: ignore[attr-defined]


@admin.register(RegistryEvent)
class RegistryEventAdmin(ReadOnlyAdmin):
    list_display = [
        "received_at",
        "instance",
        "action",
        "repository",
        "tag",
        "digest_short",
        "status",
        "reason",
    ]
    list_filter = [*_filters("instance_id"), "action", "status"]
    list_select_related = ["instance"]
    search_fields = ["repository", "tag", "digest", "event_id"]

    @admin.display(description="digest", ordering="digest")
    def digest_short(self, obj: RegistryEvent) -> str:
        return digest_html(obj.digest)
