"""KMS API serializers: shape input for ``kms.services`` and render its results.

Input serializers only check types (string, integer, base64); the rules (alias
pattern, regions, usages, algorithms, windows) live in ``kms.services`` so the
admin, the API and the clients agree. Output serializers list their fields
explicitly: sealed material and the master-key version are never rendered.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from kms import crypto
from kms.models import Key, KeyUsage, ServiceAuthorization


@extend_schema_field(OpenApiTypes.BYTE)
class Base64BytesField(serializers.Field):
    """Standard base64 text in, ``bytes`` out (and back)."""

    default_error_messages = {
        "type": "Must be a base64-encoded string.",
        "invalid": "Not valid base64 (standard alphabet, padded, no whitespace).",
    }

    def to_internal_value(self, data: Any) -> bytes:
        if not isinstance(data, str):
            self.fail("type")
        try:
            encoded = data.encode("ascii")
            decoded = base64.b64decode(encoded, validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            self.fail("invalid")
        # Only the canonical encoding: no stray padding or non-zero trailing bits.
        if base64.b64encode(decoded) != encoded:
            self.fail("invalid")
        return decoded

    def to_representation(self, value: bytes) -> str:
        return base64.b64encode(bytes(value)).decode("ascii")


class StrictCharField(serializers.CharField):
    """A JSON string only: numbers and booleans are not silently turned into text."""

    default_error_messages = {"not_a_string": "Must be a string."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("not_a_string")
        return super().to_internal_value(data)


def _text(**kwargs: Any) -> serializers.CharField:
    # Keep the caller's text exactly: the service validates it.
    return StrictCharField(trim_whitespace=False, **kwargs)


# --- keys -------------------------------------------------------------------


class KeySerializer(serializers.ModelSerializer):
    key_state = serializers.CharField(source="state", read_only=True)

    class Meta:
        model = Key
        fields = [
            "key_id",
            "alias",
            "description",
            "region",
            "key_usage",
            "key_spec",
            "origin",
            "key_state",
            "deletion_date",
            "public_key_fingerprint",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class KeyCreateSerializer(serializers.Serializer):
    alias = _text(allow_blank=True)
    description = _text(required=False, allow_blank=True, default="")
    region = _text(required=False, allow_null=True, default=None)  # None: the default
    key_usage = _text(required=False, default=KeyUsage.RSA_2048.value)


class KeyUpdateSerializer(serializers.Serializer):
    """PATCH: only the description can change."""

    description = _text(allow_blank=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(self.initial_data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError(
                {name: ["This field cannot be changed; only description can."] for name in unknown}
            )
        return attrs


class PublicKeySerializer(serializers.Serializer):
    key_id = serializers.CharField()
    key_usage = serializers.CharField()
    public_key_pem = serializers.CharField()
    public_key = serializers.CharField(source="public_key_der_b64")
    fingerprint = serializers.CharField()


class SignRequestSerializer(serializers.Serializer):
    message = Base64BytesField()
    algorithm = _text()
    message_type = _text(required=False, default=crypto.RAW)
    service = _text(required=False, allow_null=True, default=None)


class SignResponseSerializer(serializers.Serializer):
    key_id = serializers.CharField()
    signature = Base64BytesField()
    algorithm = serializers.CharField()
    message_type = serializers.CharField()


class VerifyRequestSerializer(serializers.Serializer):
    message = Base64BytesField()
    signature = Base64BytesField()
    algorithm = _text()
    message_type = _text(required=False, default=crypto.RAW)


class VerifyResponseSerializer(serializers.Serializer):
    """Documentation of the verify answer."""

    signature_valid = serializers.BooleanField()


class ScheduleDeletionSerializer(serializers.Serializer):
    # The range (7..30) is checked by the service, with the same message everywhere.
    pending_window_in_days = serializers.IntegerField()


# --- service authorizations ---------------------------------------------------


class ServiceAuthorizationSerializer(serializers.ModelSerializer):
    granted_by: serializers.SlugRelatedField = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    revoked_by: serializers.SlugRelatedField = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    active = serializers.BooleanField(source="is_active", read_only=True)

    class Meta:
        model = ServiceAuthorization
        fields = [
            "id",
            "service",
            "granted_by",
            "granted_at",
            "note",
            "revoked_by",
            "revoked_at",
            "active",
        ]
        read_only_fields = fields


class GrantServiceAuthorizationSerializer(serializers.Serializer):
    service = _text()
    note = _text(required=False, allow_blank=True, default="", max_length=255)


class RevokeServiceAuthorizationSerializer(serializers.Serializer):
    service = _text()
