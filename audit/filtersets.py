"""The audit log's query parameters (``config.filters``), all optional, combined with AND.

A malformed value answers 400 with ``fields`` naming the parameter.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.db.models import QuerySet

from audit.models import ActorType, AuditEvent
from config.filters import (
    ChoiceParamFilter,
    DateTimeParamFilter,
    FilterSet,
    ParameterError,
    TextFilter,
)
from config.ids import is_id

_AT_OR_AFTER = "Only events at or after this ISO 8601 date-time (UTC when without a time zone)."
_AT_OR_BEFORE = "Only events at or before this ISO 8601 date-time (UTC when without a time zone)."


class _PresentField(forms.CharField):
    """Text where an empty value is a value: None only when the parameter is absent."""

    def to_python(self, value: Any) -> str | None:
        return None if value is None else str(value)


class NamespaceNameFilter(TextFilter):
    """No namespace is named "": an empty value selects no event (rather than every one,
    which would read as "the events of namespace ''")."""

    field_class = _PresentField

    def filter(self, qs: QuerySet[Any], value: str | None) -> QuerySet[Any]:
        if value is None:
            return qs
        return qs.filter(namespace_name=value) if value else qs.none()


class _AuditEventFilterForm(forms.Form):
    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        since, until = cleaned.get("since"), cleaned.get("until")
        if since and until and since > until:
            self.add_error("since", ParameterError("must not be later than until."))
        return cleaned


class AuditEventFilterSet(FilterSet):
    actor = TextFilter(
        "actor",
        method="filter_actor",
        help_text="Only events of this actor: a user id (digits) or an actor label "
        "(a username, `registry:<instance>`, `manage.py <command>`, `system`).",
    )
    actor_type = ChoiceParamFilter(
        "actor_type",
        choices=ActorType.values,
        help_text="Only events of this kind of actor.",
        message="{value!r} is not one of {choices}.",
        summary="Invalid {name}: {message}",
    )
    action = TextFilter(
        "action",
        method="filter_action",
        help_text="Only this action code (`kms.key.created`), or the codes "
        "starting with a prefix ending in `*` (`kms.key.*`).",
    )
    object_type = TextFilter(
        "object_type", help_text="Only events about this kind of object (`kms.key`)."
    )
    object_id = TextFilter("object_id", help_text="Only events about the object with this id.")
    instance = TextFilter(
        "instance_name", help_text="Only events of the registry instance with this name."
    )
    namespace = NamespaceNameFilter(
        "namespace_name",
        help_text="Only events about the namespace with this name (exact; "
        "an empty value matches no event).",
    )
    since = DateTimeParamFilter("at", "gte", help_text=_AT_OR_AFTER)
    until = DateTimeParamFilter("at", "lte", help_text=_AT_OR_BEFORE)

    class Meta:
        form = _AuditEventFilterForm

    def filter_actor(
        self, queryset: QuerySet[AuditEvent], name: str, value: str
    ) -> QuerySet[AuditEvent]:
        if is_id(value):
            return queryset.filter(actor_id=int(value))
        return queryset.filter(actor_label=value)

    def filter_action(
        self, queryset: QuerySet[AuditEvent], name: str, value: str
    ) -> QuerySet[AuditEvent]:
        if value.endswith("*"):
            return queryset.filter(action__startswith=value[:-1])
        return queryset.filter(action=value)
