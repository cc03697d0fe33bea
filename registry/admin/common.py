"""What the registry's admin pages share: the digest cell, one-query list filters, and
the mixins that scope rows to the user and keep recorded rows read-only."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import formats, timezone
from django.utils.html import format_html

from accounts.scoping import scope_model, visible_instances, visible_namespaces
from config.ids import is_id
from registry.models import (
    Manifest,
    ManifestReference,
    RegistryEvent,
    Repository,
    Tag,
    TagHistory,
    short_digest,
)
from registry.reference import DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST

if TYPE_CHECKING:
    # The mixins are mixed into ModelAdmin subclasses: type them as one.
    _ModelAdmin = admin.ModelAdmin
else:
    _ModelAdmin = object

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


# Admin pages load this for their lists (columns that matter first, the rest compact) and
# forms (a select never wider than its column).
ADMIN_CSS = {"all": ["registry/admin.css"]}

_MEDIA_TYPE_LABELS = {
    OCI_MANIFEST: "OCI manifest",
    OCI_INDEX: "OCI index",
    DOCKER_MANIFEST: "Docker manifest",
    DOCKER_MANIFEST_LIST: "Docker manifest list",
}


def when(value: Any) -> str:
    """A date as every admin page shows it (``DATETIME_FORMAT``, config/formats)."""
    if value is None:
        return "-"
    return formats.date_format(timezone.localtime(value), "DATETIME_FORMAT")


def media_type_html(media_type: str) -> str:
    """A short name for the media type, the full one in its title."""
    if not media_type:
        return "-"
    label = _MEDIA_TYPE_LABELS.get(media_type, media_type.rsplit("/", 1)[-1])
    return format_html('<span title="{}">{}</span>', media_type, label)


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


def filters_for(instance_path: str, namespace_path: str | None = None) -> list[Any]:
    filters: list[Any] = [type("ByInstance", (InstanceFilter,), {"field_path": instance_path})]
    if namespace_path:
        filters.append(type("ByNamespace", (NamespaceFilter,), {"field_path": namespace_path}))
    return filters


class ScopedAdminMixin(_ModelAdmin):
    """Only the rows of the instances (and namespaces) granted to the user
    (``accounts.scoping``; superusers see all); other rows do not exist for it."""

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return scope_model(super().get_queryset(request), request.user)


# Rows that go with their parent: deleting an instance or namespace through the services
# removes them, so the user needs no delete permission on these read-only models.
_RECORDED_MODELS = (Repository, Manifest, ManifestReference, Tag, TagHistory, RegistryEvent)


class DeletesRecordsMixin(_ModelAdmin):
    def get_deleted_objects(self, objs, request):
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
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
