"""Admin for namespaces: writes through ``registry.services.namespaces``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from accounts.scoping import visible_instances
from config.forms import server_side_limits
from registry.admin.common import ADMIN_CSS, DeletesRecordsMixin, ScopedAdminMixin, filters_for
from registry.models import Namespace
from registry.services.namespaces import create_namespace, delete_namespace, update_namespace

if TYPE_CHECKING:
    from typing import TypedDict

    from django_stubs_ext import WithAnnotations

    class _RepositoryCount(TypedDict):
        _repository_count: int


NAME_RULES = (
    "2-30 characters: lowercase letters and digits, with single '.', '_' or '-' "
    "separators between them (starting and ending with a letter or digit), like team-a. "
    "Cannot be changed later."
)


class NamespaceForm(forms.ModelForm):
    class Meta:
        model = Namespace
        fields = ["instance", "name", "description"]
        help_texts = {
            "name": NAME_RULES,
            "description": "Optional, up to 255 characters.",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        server_side_limits(self.fields)


@admin.register(Namespace)
class NamespaceAdmin(ScopedAdminMixin, DeletesRecordsMixin, admin.ModelAdmin):
    form = NamespaceForm
    # The name and the counts first; the signing app adds its policy column after the name.
    list_display = ["name", "repository_count", "instance", "description", "created_at"]
    list_filter = filters_for("instance_id")
    list_select_related = ["instance"]
    search_fields = ["name", "description"]
    # Also orders the autocomplete lookups (paginated: they need a stable order).
    ordering = ["instance__name", "name"]
    fields = ["instance", "name", "description", "created_at"]

    class Media:
        css = ADMIN_CSS

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
    def repository_count(self, obj: WithAnnotations[Namespace, _RepositoryCount]) -> int:
        return obj._repository_count

    def save_model(self, request: HttpRequest, obj: Namespace, form: Any, change: bool) -> None:
        if change:
            update_namespace(namespace=obj, description=obj.description)
            return
        created = create_namespace(
            instance=obj.instance, name=obj.name, description=obj.description
        )
        obj.pk = created.pk
        obj.created_at = created.created_at
        obj._state.adding = False

    def delete_model(self, request: HttpRequest, obj: Namespace) -> None:
        delete_namespace(namespace=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Namespace]) -> None:
        for namespace in queryset.select_related("instance"):
            delete_namespace(namespace=namespace)
