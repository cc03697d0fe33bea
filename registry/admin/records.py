"""Admin for what Signet recorded from the registries: repositories, tags (with their
history), manifests (with an index's children) and notification events. Read-only."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from registry.admin.common import (
    ADMIN_CSS,
    ReadOnlyAdmin,
    digest_html,
    filters_for,
    media_type_html,
)
from registry.models import Manifest, ManifestReference, RegistryEvent, Repository, Tag, TagHistory

if TYPE_CHECKING:
    from typing import TypedDict

    from django_stubs_ext import WithAnnotations

    class _TagCount(TypedDict):
        _tag_count: int


@admin.register(Repository)
class RepositoryAdmin(ReadOnlyAdmin):
    list_display = ["name", "namespace", "instance_name", "tag_count", "created_at"]
    list_filter = filters_for("namespace__instance_id", "namespace_id")
    list_select_related = ["namespace__instance"]
    search_fields = ["name"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Repository]:
        return super().get_queryset(request).annotate(_tag_count=Count("tags", distinct=True))

    @admin.display(description="instance", ordering="namespace__instance__name")
    def instance_name(self, obj: Repository) -> str:
        return obj.namespace.instance.name

    @admin.display(description="tags", ordering="_tag_count")
    def tag_count(self, obj: WithAnnotations[Repository, _TagCount]) -> int:
        return obj._tag_count


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
    # What a row is (repository:tag) first; the rest compact. The signing app inserts its
    # signature and Sign columns right after the reference.
    list_display = ["reference", "digest_short", "media_type", "pushed_at"]
    list_display_links = ["reference"]
    list_filter = filters_for("repository__namespace__instance_id", "repository__namespace_id")
    list_select_related = ["repository__namespace__instance", "manifest"]
    search_fields = ["repository__name", "name"]
    fields = readonly_fields = (
        "pull_reference",
        "repository_name",
        "name",
        "digest_short",
        "media_type",
        "pushed_at",
        "updated_at",
    )
    inlines = [TagHistoryInline]
    date_hierarchy = None

    class Media:
        css = ADMIN_CSS

    def pull_domain(self, obj: Tag) -> str:
        """The domain users pull by (the signing app uses its policy's)."""
        return obj.repository.namespace.instance.default_domain

    @admin.display(description="image", ordering="repository__name")
    def reference(self, obj: Tag) -> str:
        return f"{obj.repository.name}:{obj.name}"

    @admin.display(description="pull reference")
    def pull_reference(self, obj: Tag) -> str:
        base = f"{self.pull_domain(obj)}/{obj.repository.name}"
        return format_html(
            '<code id="pull-reference">{}:{}</code><br>'
            '<code id="pull-reference-digest">{}@{}</code>',
            base,
            obj.name,
            base,
            obj.manifest.digest,
        )

    @admin.display(description="repository", ordering="repository__name")
    def repository_name(self, obj: Tag) -> str:
        return obj.repository.name

    @admin.display(description="digest", ordering="manifest__digest")
    def digest_short(self, obj: Tag) -> str:
        return digest_html(obj.manifest.digest)

    @admin.display(description="media type", ordering="manifest__media_type")
    def media_type(self, obj: Tag) -> str:
        return media_type_html(obj.manifest.media_type)


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
        *filters_for("repository__namespace__instance_id", "repository__namespace_id"),
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
    def tag_count(self, obj: WithAnnotations[Manifest, _TagCount]) -> int:
        return obj._tag_count


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
    list_filter = [*filters_for("instance_id"), "action", "status"]
    list_select_related = ["instance"]
    search_fields = ["repository", "tag", "digest", "event_id"]

    @admin.display(description="digest", ordering="digest")
    def digest_short(self, obj: RegistryEvent) -> str:
        return digest_html(obj.digest)
