"""Query-parameter filtering for the API lists: django-filter FilterSets, as NetBox does.

Each app declares its FilterSets in ``<app>/filtersets.py`` from the filters below; a view
names its own in ``filterset_class`` and ``FilterBackend`` (the project's default filter
backend) applies it to the view's list and detail lookups. The OpenAPI schema documents
every filter (drf-spectacular reads the FilterSet): the type, enum and ``help_text`` given
here.

A malformed value answers 400 in the project's error shape, naming the first bad
parameter in the order its FilterSet declares them::

    {"code": "InvalidParameterValue",
     "message": "Invalid namespace: expected a numeric id, got 'x'.",
     "fields": {"namespace": ["Expected a numeric id."]}}

Which rows a user may see is not a filter's business: views scope their querysets first.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema_field
from rest_framework.request import Request

from config.errors import ValidationFailed
from config.ids import is_id

# How much of a malformed value an error message repeats.
ECHO_LIMIT = 40


class ParameterError(ValidationError):
    """A malformed query parameter value.

    ``message`` is what the error body lists under ``fields``; ``summary``, a template of
    ``{name}``, ``{message}`` and the ``placeholders``, becomes the body's ``message`` once
    the FilterSet knows the parameter's name. User input only ever fills a placeholder.
    """

    def __init__(
        self, message: str, *, summary: str = "Invalid {name}: {message}", **placeholders: str
    ) -> None:
        super().__init__(message, code="invalid")
        self.summary = summary
        self.placeholders = placeholders

    def summary_for(self, name: str) -> str:
        return self.summary.format(name=name, message=self.message, **self.placeholders)


class FilterSet(django_filters.FilterSet):
    """A FilterSet whose malformed values raise ``error_class`` (a 400 in the error shape)."""

    error_class: ClassVar[type[ValidationFailed]] = ValidationFailed

    def filtered(self) -> QuerySet[Any]:
        """The queryset, filtered; raises ``error_class`` for the first malformed value."""
        if self.is_bound and not self.form.is_valid():
            raise self.first_error()
        return self.qs

    def first_error(self) -> ValidationFailed:
        errors = self.form.errors
        name = next(name for name in [*self.filters, *errors] if name in errors)
        error = errors[name].as_data()[0]
        if isinstance(error, ParameterError):
            summary, message = error.summary_for(name), str(error.message)
        else:  # a stock form field's error
            message = str(next(iter(error)))
            summary = f"Invalid {name}: {message}"
        return self.error_class(summary, fields={name: [message]})


class FilterBackend(DjangoFilterBackend):
    """Applies the view's ``filterset_class``; a malformed value answers 400 naming it."""

    def filter_queryset(
        self, request: Request, queryset: QuerySet[Any], view: Any
    ) -> QuerySet[Any]:
        filterset = self.get_filterset(request, queryset, view)
        if filterset is None:
            return queryset
        if not isinstance(filterset, FilterSet):
            raise TypeError(f"{type(filterset).__name__} must extend config.filters.FilterSet.")
        return filterset.filtered()


def _documented(filter_: Any, schema: dict[str, Any]) -> None:
    """Give a filter of our own field types its OpenAPI schema (type, enum, description)."""
    extend_schema_field({**schema, "description": filter_.extra["help_text"]})(filter_)


# --- fields ----------------------------------------------------------------------------------


class IdField(forms.Field):
    def to_python(self, value: Any) -> int | None:
        if value in (None, ""):
            return None
        if not is_id(value):
            raise ParameterError(
                "Expected a numeric id.",
                summary="Invalid {name}: expected a numeric id, got {value!r}.",
                value=str(value)[:ECHO_LIMIT],
            )
        return int(value)


class StrictBooleanField(forms.Field):
    """``true``/``1`` or ``false``/``0`` (any case); anything else is an error, not None."""

    def to_python(self, value: Any) -> bool | None:
        if value in (None, ""):
            return None
        lowered = str(value).lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0"):
            return False
        raise ParameterError(
            "Expected true or false.",
            summary="Invalid {name}: expected true or false, got {value!r}.",
            value=str(value)[:ECHO_LIMIT],
        )


class ChoiceParamField(forms.Field):
    """One of ``allowed`` (a list, or a callable read at each request: settings may change).

    ``message`` and ``summary`` are templates of ``{value}`` (the value, cut to
    ``echo_limit`` characters unless that is None) and ``{choices}`` (comma-separated).
    """

    def __init__(
        self,
        *,
        allowed: Sequence[str] | Callable[[], Sequence[str]],
        message: str,
        summary: str,
        echo_limit: int | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.allowed = allowed
        self.message = message
        self.summary = summary
        self.echo_limit = echo_limit

    def to_python(self, value: Any) -> str | None:
        if value in (None, ""):
            return None
        value = str(value)
        choices = list(self.allowed() if callable(self.allowed) else self.allowed)
        if value in choices:
            return value
        echoed = value if self.echo_limit is None else value[: self.echo_limit]
        listed = ", ".join(choices)
        raise ParameterError(
            self.message.format(value=echoed, choices=listed),
            summary=self.summary,
            value=echoed,
            choices=listed,
        )


class DateTimeParamField(forms.Field):
    """An ISO 8601 date-time, as UTC (a value without a time zone is taken as UTC)."""

    def to_python(self, value: Any) -> datetime.datetime | None:
        if value in (None, ""):
            return None
        echoed = str(value)[:ECHO_LIMIT]
        try:
            parsed = parse_datetime(str(value))
        except ValueError:
            parsed = None
        if parsed is None:
            raise ParameterError(
                f"{echoed!r} is not an ISO 8601 date-time (e.g. 2025-01-31T12:00:00Z)."
            )
        if timezone.is_naive(parsed):
            parsed = timezone.make_aware(parsed, datetime.UTC)
        try:
            # In UTC: PostgreSQL refuses offsets beyond ±15:59 (schemathesis sent +17:10).
            return parsed.astimezone(datetime.UTC)
        except OverflowError:
            raise ParameterError(f"{echoed!r} is out of range once converted to UTC.") from None


# --- filters ---------------------------------------------------------------------------------


class TextFilter(django_filters.CharFilter):
    """A text value, matched as given (not stripped); an empty value filters nothing.

    ``method`` names a FilterSet method ``(queryset, name, value)`` for a lookup of its own.
    """

    def __init__(
        self,
        field_name: str,
        lookup_expr: str = "exact",
        *,
        help_text: str,
        method: str | None = None,
    ) -> None:
        super().__init__(field_name, lookup_expr, method=method, help_text=help_text, strip=False)


class IdFilter(django_filters.Filter):
    """A numeric id (``?namespace=3``)."""

    field_class = IdField

    def __init__(self, field_name: str, *, help_text: str) -> None:
        super().__init__(field_name, help_text=help_text)
        _documented(self, {"type": "integer"})


class IdOrNameFilter(TextFilter):
    """An object by id or by name (``?instance=3`` or ``?instance=prod``): ``field_name``
    is the foreign key; names never are all digits."""

    def filter(self, qs: QuerySet[Any], value: str) -> QuerySet[Any]:
        if value in ("", None):
            return qs
        if is_id(value):
            return qs.filter(Q(**{f"{self.field_name}_id": int(value)}))
        return qs.filter(Q(**{f"{self.field_name}__name": value}))


class StrictBooleanFilter(django_filters.BooleanFilter):
    """``true``/``1`` or ``false``/``0``."""

    field_class = StrictBooleanField


class ChoiceParamFilter(django_filters.Filter):
    """One of a fixed set of values, listed as the parameter's enum in the schema (when
    ``choices`` is a list: a callable's values may change while the schema is served)."""

    field_class = ChoiceParamField

    def __init__(
        self,
        field_name: str,
        *,
        choices: Sequence[str] | Callable[[], Sequence[str]],
        help_text: str,
        message: str = "Expected one of {choices}.",
        summary: str = "Invalid {name}: {value!r} is not one of {choices}.",
        echo_limit: int | None = ECHO_LIMIT,
    ) -> None:
        # Not ``choices``: drf-spectacular would read (value, label) pairs from it.
        super().__init__(
            field_name,
            allowed=choices,
            help_text=help_text,
            message=message,
            summary=summary,
            echo_limit=echo_limit,
        )
        schema: dict[str, Any] = {"type": "string"}
        if not callable(choices):
            schema["enum"] = list(choices)
        _documented(self, schema)


class DateTimeParamFilter(django_filters.IsoDateTimeFilter):
    """An ISO 8601 date-time compared with ``lookup_expr`` (``gte``, ``lte``)."""

    field_class = DateTimeParamField
