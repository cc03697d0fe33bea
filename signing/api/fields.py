"""The signing API's strict input fields: JSON types as they are (no silent coercion of
numbers or "yes" into text or booleans), an instance by id or name, and unknown fields
refused by name."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from config.ids import is_id


class StrictCharField(serializers.CharField):
    """A JSON string only: numbers and booleans are not silently turned into text."""

    default_error_messages = {"not_a_string": "Must be a string."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("not_a_string")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """JSON ``true`` or ``false`` only (not "yes", 1 or "true")."""

    default_error_messages = {"invalid": "Must be true or false."}

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


@extend_schema_field(
    {
        "oneOf": [{"type": "integer", "minimum": 1}, {"type": "string", "minLength": 1}],
        "description": "An instance id, or its name.",
    }
)
class InstanceRefField(serializers.Field):
    """An instance by id (a JSON integer or a digit string) or by name.

    Instance names start with a letter, so a digit string is always an id.
    """

    default_error_messages = {
        "invalid": "Must be an instance name or a numeric instance id.",
    }

    def to_internal_value(self, data: Any) -> int | str:
        if isinstance(data, bool):
            self.fail("invalid")
        if isinstance(data, int):
            if data < 1:
                self.fail("invalid")
            return data
        if isinstance(data, str) and data:
            return int(data) if is_id(data) else data
        self.fail("invalid")
        raise AssertionError("unreachable")

    def to_representation(self, value: Any) -> Any:
        return value


def text_field(**kwargs: Any) -> StrictCharField:
    # Keep the caller's text exactly: the service validates it.
    return StrictCharField(trim_whitespace=False, **kwargs)


def reject_unknown_fields(serializer: serializers.Serializer, hint: str) -> None:
    data = serializer.initial_data if isinstance(serializer.initial_data, dict) else {}
    unknown = sorted(set(data) - set(serializer.fields))
    if unknown:
        raise serializers.ValidationError({name: [hint] for name in unknown})
