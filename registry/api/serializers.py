"""Registry API serializers.

Input serializers only check JSON types; the rules live in ``registry.services`` so the
admin, the API and the webhook agree. Output serializers list their fields explicitly:
credentials and the webhook token hash are never rendered.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from registry.models import Instance, Manifest, Namespace, Repository, Tag


class StrictCharField(serializers.CharField):
    """A JSON string only: numbers and booleans are not silently turned into text."""

    default_error_messages = {"not_a_string": "Must be a string."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("not_a_string")
        return super().to_internal_value(data)


def _text(**kwargs: Any) -> StrictCharField:
    return StrictCharField(trim_whitespace=False, **kwargs)


# --- instances --------------------------------------------------------------------------


# Where and as whom Signet reaches the registry: for those who may change the instance
# (``show_connection`` in the context), not for readers.
CONNECTION_FIELDS = ("backend_url", "username", "secret_env")


def _connection_field(help_text: str) -> serializers.CharField:
    # Not read-only: the schema must not list it as always present (readers lack it).
    return serializers.CharField(
        required=False, help_text=f"{help_text} Only for those who may change the instance."
    )


class InstanceSerializer(serializers.ModelSerializer):
    """``backend_url``, ``username`` and ``secret_env`` only with ``show_connection``."""

    backend_url = _connection_field("Where Signet reaches the registry API.")
    username = _connection_field("The registry user Signet authenticates as.")
    secret_env = _connection_field(
        "The SIGNET_REGISTRY_SECRET_* variable holding the credential, if any."
    )
    has_secret = serializers.BooleanField(read_only=True)
    custom_domains = serializers.SerializerMethodField()
    domain_names = serializers.SerializerMethodField()
    namespace_count = serializers.IntegerField(read_only=True, default=None)

    class Meta:
        model = Instance
        fields = [
            "id",
            "name",
            "region",
            "description",
            "backend_url",
            "auth_type",
            "username",
            "has_secret",
            "secret_env",
            "default_domain",
            "custom_domains",
            "domain_names",
            "namespace_count",
            "webhook_token_rotated_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_custom_domains(self, instance: Instance) -> list[str]:
        return instance.domain_names()[1:]

    def to_representation(self, instance: Instance) -> dict[str, Any]:
        data = super().to_representation(instance)
        if not self.context.get("show_connection", False):
            for name in CONNECTION_FIELDS:
                data.pop(name, None)
        return data

    def get_domain_names(self, instance: Instance) -> list[str]:
        return instance.domain_names()


class WebhookTokenSerializer(serializers.Serializer):
    """Documentation: the webhook token, shown once (create and rotate only)."""

    webhook_url = serializers.CharField()
    webhook_token = serializers.CharField()
    notifications_config = serializers.CharField(
        help_text="The `notifications:` block to paste into the registry's config.yml."
    )


class InstanceWithTokenSerializer(InstanceSerializer):
    """Documentation of the create answer: the instance plus its webhook token, once."""

    webhook_url = serializers.CharField()
    webhook_token = serializers.CharField()
    notifications_config = serializers.CharField()

    class Meta(InstanceSerializer.Meta):
        fields = [
            *InstanceSerializer.Meta.fields,
            "webhook_url",
            "webhook_token",
            "notifications_config",
        ]
        read_only_fields = fields


class InstanceCreateSerializer(serializers.Serializer):
    name = _text(max_length=100)
    region = _text(required=False, allow_blank=True, default="")
    description = _text(required=False, allow_blank=True, default="", max_length=255)
    backend_url = _text(max_length=255)
    auth_type = _text(required=False, default="none")
    username = _text(required=False, allow_blank=True, default="", max_length=128)
    secret = _text(required=False, allow_blank=True, default="", write_only=True)
    secret_env = _text(required=False, allow_blank=True, default="", max_length=128)
    default_domain = _text(max_length=261)
    custom_domains = serializers.ListField(
        child=_text(max_length=261), required=False, default=list
    )


class InstanceUpdateSerializer(serializers.Serializer):
    """Every field optional; ``secret`` write-only (``""`` removes it). The name is fixed."""

    region = _text(required=False)
    description = _text(required=False, allow_blank=True, max_length=255)
    backend_url = _text(required=False, max_length=255)
    auth_type = _text(required=False)
    username = _text(required=False, allow_blank=True, max_length=128)
    secret = _text(required=False, allow_blank=True, write_only=True)
    secret_env = _text(required=False, allow_blank=True, max_length=128)
    default_domain = _text(required=False, max_length=261)
    custom_domains = serializers.ListField(child=_text(max_length=261), required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if (
            "name" in self.initial_data
            and self.instance is not None
            and (self.initial_data["name"] != self.instance.name)
        ):
            raise serializers.ValidationError(
                {"name": ["The name cannot change: the registry's webhook URL contains it."]}
            )
        return attrs


# --- namespaces and below ----------------------------------------------------------------


class NamespaceSerializer(serializers.ModelSerializer):
    instance_name = serializers.CharField(source="instance.name", read_only=True)
    repository_count = serializers.IntegerField(read_only=True, default=None)

    class Meta:
        model = Namespace
        fields = [
            "id",
            "instance",
            "instance_name",
            "name",
            "description",
            "repository_count",
            "created_at",
        ]
        read_only_fields = fields


class NamespaceCreateSerializer(serializers.Serializer):
    instance = serializers.IntegerField(min_value=1)
    name = _text(max_length=100)
    description = _text(required=False, allow_blank=True, default="", max_length=255)


class NamespaceUpdateSerializer(serializers.Serializer):
    description = _text(allow_blank=True, max_length=255)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        namespace = self.instance
        for name in ("name", "instance"):
            if name in self.initial_data and namespace is not None:
                current = namespace.name if name == "name" else namespace.instance_id
                if self.initial_data[name] != current:
                    raise serializers.ValidationError(
                        {name: [f"The {name} of a namespace cannot change."]}
                    )
        return attrs


class RepositorySerializer(serializers.ModelSerializer):
    instance = serializers.IntegerField(source="namespace.instance_id", read_only=True)
    instance_name = serializers.CharField(source="namespace.instance.name", read_only=True)
    namespace_name = serializers.CharField(source="namespace.name", read_only=True)
    tag_count = serializers.IntegerField(read_only=True, default=None)

    class Meta:
        model = Repository
        fields = [
            "id",
            "instance",
            "instance_name",
            "namespace",
            "namespace_name",
            "name",
            "short_name",
            "tag_count",
            "created_at",
        ]
        read_only_fields = fields


class TagSerializer(serializers.ModelSerializer):
    instance = serializers.IntegerField(source="repository.namespace.instance_id", read_only=True)
    instance_name = serializers.CharField(
        source="repository.namespace.instance.name", read_only=True
    )
    namespace = serializers.IntegerField(source="repository.namespace_id", read_only=True)
    namespace_name = serializers.CharField(source="repository.namespace.name", read_only=True)
    repository_name = serializers.CharField(source="repository.name", read_only=True)
    digest = serializers.CharField(source="manifest.digest", read_only=True)
    media_type = serializers.CharField(source="manifest.media_type", read_only=True)
    size = serializers.IntegerField(source="manifest.size", read_only=True)

    class Meta:
        model = Tag
        fields = [
            "id",
            "instance",
            "instance_name",
            "namespace",
            "namespace_name",
            "repository",
            "repository_name",
            "name",
            "digest",
            "media_type",
            "size",
            "pushed_at",
            "updated_at",
        ]
        read_only_fields = fields


class ManifestChildSerializer(serializers.Serializer):
    """Documentation of one child of an index (``ManifestSerializer.children``)."""

    digest = serializers.CharField()
    media_type = serializers.CharField()
    size = serializers.IntegerField(allow_null=True)
    platform = serializers.CharField()
    manifest = serializers.IntegerField(allow_null=True, help_text="The child's manifest id.")


class ManifestSerializer(serializers.ModelSerializer):
    instance = serializers.IntegerField(source="repository.namespace.instance_id", read_only=True)
    namespace = serializers.IntegerField(source="repository.namespace_id", read_only=True)
    repository_name = serializers.CharField(source="repository.name", read_only=True)
    is_index = serializers.BooleanField(read_only=True)
    tags = serializers.SerializerMethodField()
    children = serializers.SerializerMethodField()

    class Meta:
        model = Manifest
        fields = [
            "id",
            "instance",
            "namespace",
            "repository",
            "repository_name",
            "digest",
            "media_type",
            "size",
            "is_index",
            "pushed_at",
            "tags",
            "children",
        ]
        read_only_fields = fields

    def get_tags(self, manifest: Manifest) -> list[str]:
        return sorted(tag.name for tag in manifest.tags.all())

    @extend_schema_field(ManifestChildSerializer(many=True))
    def get_children(self, manifest: Manifest) -> list[dict[str, Any]]:
        return [
            {
                "digest": reference.child_digest,
                "media_type": reference.media_type,
                "size": reference.size,
                "platform": reference.platform,
                "manifest": reference.child_id,
            }
            for reference in manifest.child_references.all()
        ]
