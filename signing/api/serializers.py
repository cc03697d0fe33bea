"""Signing API serializers.

Input serializers only check JSON types and shapes; the policy rules (name, key, region,
domain, one policy per namespace) live in ``signing.services`` so the admin and the API
give the same answers. Output serializers list their fields explicitly: no key material
other than the public key is ever rendered.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from django.db.models import Count
from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from kms import services as kms_services
from registry.models import (
    Namespace,
    namespace_validator,
    repository_validator,
    tag_validator,
)
from signing import services
from signing.api import examples
from signing.api.fields import (
    InstanceRefField,
    StrictBooleanField,
    reject_unknown_fields,
    text_field,
)
from signing.models import Signature, SignatureStatus, SigningPolicy
from signing.selectors import waiting_seconds
from signing.snippets import public_key_file_name, verification_snippets  # noqa: F401

MAX_TAGS_PER_REQUEST = 1000


# --- policies -----------------------------------------------------------------------------


class PolicyHealthSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    message = serializers.CharField()


class SignatureCountsSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    signed = serializers.IntegerField()
    pending = serializers.IntegerField()
    failed = serializers.IntegerField()


class VerificationSnippetsSerializer(serializers.Serializer):
    public_key_file = serializers.CharField()
    policy_json = serializers.CharField(help_text="A containers policy.json for skopeo/podman.")
    registries_d = serializers.CharField()
    cosign_command = serializers.CharField()


class PolicySerializer(serializers.ModelSerializer):
    """A policy as the API shows it.

    Expects a queryset from ``views.policies.policy_queryset`` (counts annotated, relations
    joined); ``health`` calls ``signing.services.policy_health``, looking the service
    grant up once per serializer context.
    """

    instance = serializers.IntegerField(source="namespace.instance_id", read_only=True)
    instance_name = serializers.CharField(source="namespace.instance.name", read_only=True)
    namespace_name = serializers.CharField(source="namespace.name", read_only=True)
    key_id = serializers.UUIDField(read_only=True)
    key_alias = serializers.CharField(source="key.alias", read_only=True)
    key_state = serializers.CharField(source="key.state", read_only=True)
    key_fingerprint = serializers.CharField(source="key.public_key_fingerprint", read_only=True)
    public_key_pem = serializers.CharField(source="key.public_key_pem", read_only=True)
    enabled = serializers.SerializerMethodField()
    health = serializers.SerializerMethodField()
    signatures = serializers.SerializerMethodField()
    created_by: serializers.SlugRelatedField = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    verification = serializers.SerializerMethodField()

    class Meta:
        model = SigningPolicy
        fields = [
            "id",
            "name",
            "instance",
            "instance_name",
            "namespace",
            "namespace_name",
            "key_id",
            "key_alias",
            "key_state",
            "key_fingerprint",
            "kms_region",
            "domain",
            "disabled",
            "enabled",
            "health",
            "signatures",
            "created_by",
            "created_at",
            "updated_at",
            "public_key_pem",
            "verification",
        ]
        read_only_fields = fields

    def get_enabled(self, policy: SigningPolicy) -> bool:
        return not policy.disabled

    @extend_schema_field(PolicyHealthSerializer)
    def get_health(self, policy: SigningPolicy) -> dict[str, Any]:
        # Shared by every row of a list: the grant is looked up once.
        context = cast(dict[str, Any], self.context)
        if "service_authorized" not in context:
            context["service_authorized"] = kms_services.is_service_authorized(services.SERVICE)
        health = services.policy_health(policy, authorized=context["service_authorized"])
        return {"ok": health.ok, "message": health.message}

    @extend_schema_field(SignatureCountsSerializer)
    def get_signatures(self, policy: SigningPolicy) -> dict[str, int]:
        names = ("signed", "pending", "failed")
        annotated = [getattr(policy, f"{name}_count", None) for name in names]
        if None in annotated:  # not from policy_queryset(): count now
            by_status = dict(
                policy.signatures.order_by().values_list("status").annotate(n=Count("id"))
            )
            annotated = [by_status.get(name, 0) for name in names]
        counts = {name: int(value or 0) for name, value in zip(names, annotated, strict=True)}
        return {"total": sum(counts.values()), **counts}

    @extend_schema_field(VerificationSnippetsSerializer)
    def get_verification(self, policy: SigningPolicy) -> dict[str, str]:
        return verification_snippets(policy)


class PolicyCreatedSerializer(PolicySerializer):
    """Documentation of the create answer: the policy plus warnings."""

    warnings = serializers.ListField(child=serializers.CharField())

    class Meta(PolicySerializer.Meta):
        fields = [*PolicySerializer.Meta.fields, "warnings"]
        read_only_fields = fields


class PolicyUpdatedSerializer(PolicySerializer):
    """Documentation of the update answer: the policy, warnings and re-sign candidates."""

    warnings = serializers.ListField(child=serializers.CharField())
    resign_candidates = serializers.IntegerField(
        help_text="Images signed with another key than the policy's (see resign)."
    )

    class Meta(PolicySerializer.Meta):
        fields = [*PolicySerializer.Meta.fields, "warnings", "resign_candidates"]
        read_only_fields = fields


class OperationRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.CharField(help_text="GET it for the progress (the operations resource).")
    progress_url = serializers.CharField(help_text="The admin's live progress page.")


class PolicyDeletedSerializer(serializers.Serializer):
    signatures_removed = serializers.IntegerField()
    operation = OperationRefSerializer(help_text="The removal of the .sig artifacts.")


class PolicyDeletePreviewSerializer(serializers.Serializer):
    signatures_to_remove = serializers.IntegerField()
    warning = serializers.CharField()


@extend_schema_serializer(examples=examples.POLICY_CREATE)
class PolicyCreateSerializer(serializers.Serializer):
    instance = InstanceRefField()
    namespace = text_field(max_length=100)
    name = text_field(max_length=200)
    key = text_field(max_length=100)
    kms_region = text_field(required=False, allow_null=True, allow_blank=True, default=None)
    domain = text_field(required=False, allow_null=True, allow_blank=True, default=None)
    disabled = StrictBooleanField(required=False, default=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        reject_unknown_fields(self, "Unknown field.")
        return attrs


@extend_schema_serializer(examples=examples.POLICY_UPDATE)
class PolicyUpdateSerializer(serializers.Serializer):
    """PATCH: name, key, domain and disabled can change."""

    name = text_field(required=False, max_length=200)
    key = text_field(required=False, max_length=100)
    domain = text_field(required=False, max_length=261)
    disabled = StrictBooleanField(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        reject_unknown_fields(
            self, "This field cannot be changed; only name, key, domain and disabled can."
        )
        return attrs


# --- signatures ---------------------------------------------------------------------------


class SignatureSerializer(serializers.ModelSerializer):
    """Expects ``views.signatures.signature_queryset`` (relations joined, tags prefetched)."""

    policy_name = serializers.CharField(source="policy.name", read_only=True)
    instance = serializers.IntegerField(source="policy.namespace.instance_id", read_only=True)
    instance_name = serializers.CharField(source="policy.namespace.instance.name", read_only=True)
    namespace = serializers.IntegerField(source="policy.namespace_id", read_only=True)
    namespace_name = serializers.CharField(source="policy.namespace.name", read_only=True)
    repository = serializers.IntegerField(source="manifest.repository_id", read_only=True)
    repository_name = serializers.CharField(source="manifest.repository.name", read_only=True)
    digest = serializers.CharField(source="manifest.digest", read_only=True)
    media_type = serializers.CharField(source="manifest.media_type", read_only=True)
    tags = serializers.SerializerMethodField()
    triggered_by: serializers.SlugRelatedField = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    signed_with_current_key = serializers.SerializerMethodField()
    up_to_date = serializers.SerializerMethodField()
    payload = serializers.SerializerMethodField()
    pending_since = serializers.SerializerMethodField()
    waiting_seconds = serializers.SerializerMethodField()

    class Meta:
        model = Signature
        fields = [
            "id",
            "policy",
            "policy_name",
            "instance",
            "instance_name",
            "namespace",
            "namespace_name",
            "repository",
            "repository_name",
            "manifest",
            "digest",
            "media_type",
            "tags",
            "status",
            "failure_code",
            "failure_reason",
            "attempts",
            "next_attempt_at",
            "pending_since",
            "waiting_seconds",
            "trigger",
            "triggered_by",
            "key_id",
            "key_fingerprint",
            "signed_with_current_key",
            "up_to_date",
            "algorithm",
            "docker_reference",
            "payload",
            "signature_value",
            "sig_manifest_digest",
            "signed_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_tags(self, signature: Signature) -> list[str]:
        return sorted(tag.name for tag in signature.manifest.tags.all())

    def get_signed_with_current_key(self, signature: Signature) -> bool:
        return signature.status == "signed" and signature.key_id == signature.policy.key_id

    def get_up_to_date(self, signature: Signature) -> bool:
        """Signed with the policy's current key for its current domain (no re-sign due)."""
        expected = f"{signature.policy.domain}/{signature.manifest.repository.name}"
        return (
            self.get_signed_with_current_key(signature) and signature.docker_reference == expected
        )

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_pending_since(self, signature: Signature) -> datetime | None:
        """When a pending row was recorded (it waits since then); null once not pending."""
        return signature.created_at if signature.status == SignatureStatus.PENDING else None

    @extend_schema_field(serializers.FloatField(allow_null=True))
    def get_waiting_seconds(self, signature: Signature) -> float | None:
        """Seconds a pending row has waited to be signed; null once not pending."""
        return waiting_seconds(signature)

    def get_payload(self, signature: Signature) -> str | None:
        if signature.payload is None:
            return None
        return bytes(signature.payload).decode("utf-8", errors="replace")


class SignatureStatusSerializer(serializers.ModelSerializer):
    """The short form listed in sign/resign/retry answers."""

    repository_name = serializers.CharField(source="manifest.repository.name", read_only=True)
    digest = serializers.CharField(source="manifest.digest", read_only=True)

    class Meta:
        model = Signature
        fields = [
            "id",
            "repository_name",
            "digest",
            "status",
            "trigger",
            "key_id",
            "failure_code",
            "failure_reason",
            "signed_at",
        ]
        read_only_fields = fields


class SignResultSerializer(serializers.Serializer):
    """Documentation of a sign/resign answer: the operation started (the workers sign;
    follow it at ``operation.url``) and the figures at answer time."""

    operation = OperationRefSerializer(
        allow_null=True, help_text="Null when nothing needed signing (nothing was started)."
    )

    requested = serializers.IntegerField()
    already_signed = serializers.IntegerField()
    no_policy = serializers.IntegerField()
    signed = serializers.IntegerField()
    failed = serializers.IntegerField()
    skipped = serializers.IntegerField()
    queued = serializers.IntegerField(help_text="Handed to the background workers.")
    failures = serializers.ListField(child=serializers.CharField())
    signatures = SignatureStatusSerializer(many=True)
    signatures_truncated = serializers.BooleanField()


class PolicyRetryResultSerializer(serializers.Serializer):
    operation = OperationRefSerializer(allow_null=True)
    retried = serializers.IntegerField()
    signed = serializers.IntegerField()
    failed = serializers.IntegerField()
    skipped = serializers.IntegerField()
    failures = serializers.ListField(child=serializers.CharField())
    signatures = SignatureStatusSerializer(many=True)
    signatures_truncated = serializers.BooleanField()


class SignatureRetryResultSerializer(serializers.Serializer):
    signed = serializers.IntegerField()
    failed = serializers.IntegerField()
    skipped = serializers.IntegerField()
    signature = SignatureSerializer()


class VerificationResultSerializer(serializers.Serializer):
    """Documentation of the verify answer (``signing.verification.VerificationResult``)."""

    image = serializers.CharField()
    verified = serializers.BooleanField()
    digest = serializers.CharField()
    docker_reference = serializers.CharField()
    key_id = serializers.CharField()
    key_fingerprint = serializers.CharField()
    reasons = serializers.ListField(child=serializers.CharField())


# --- signing and verifying ------------------------------------------------------------------


@extend_schema_serializer(examples=examples.SIGN)
class SignSerializer(serializers.Serializer):
    """TCR CreateSignature: one tag, a list of tags, a repository or a whole namespace."""

    instance = InstanceRefField()
    namespace = text_field(max_length=30, validators=[namespace_validator])
    repository = text_field(
        required=False,
        max_length=255,
        help_text="With or without the namespace (app or team-a/app). Required with tag "
        "or tags; alone, every tag of the repository.",
    )
    tag = text_field(
        required=False,
        max_length=128,
        validators=[tag_validator],
        help_text="One tag. Give tag or tags, not both.",
    )
    tags = serializers.ListField(
        child=text_field(max_length=128, validators=[tag_validator]),
        required=False,
        allow_empty=False,
        max_length=MAX_TAGS_PER_REQUEST,
        help_text="Several tags. Give tag or tags, not both.",
    )

    def validate_repository(self, value: str) -> str:
        namespace = self.initial_data.get("namespace")
        full = (
            value
            if isinstance(namespace, str) and value.startswith(f"{namespace}/")
            else (f"{namespace}/{value}")
        )
        repository_validator(full)
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        reject_unknown_fields(self, "Unknown field.")
        if "tag" in attrs and "tags" in attrs:
            raise serializers.ValidationError({"tags": ["Give either tag or tags, not both."]})
        if ("tag" in attrs or "tags" in attrs) and "repository" not in attrs:
            name = "tag" if "tag" in attrs else "tags"
            raise serializers.ValidationError({"repository": [f"Required when {name} is given."]})
        if "tag" in attrs:
            attrs["tags"] = [attrs.pop("tag")]
        if "tags" in attrs:
            attrs["tags"] = list(dict.fromkeys(attrs["tags"]))
        return attrs


@extend_schema_serializer(examples=examples.VERIFY)
class VerifySerializer(serializers.Serializer):
    image = text_field(max_length=1000)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        reject_unknown_fields(self, "Unknown field.")
        return attrs


# --- namespaces -----------------------------------------------------------------------------


class NamespaceSigningPolicySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    enabled = serializers.BooleanField()
    key_id = serializers.CharField()
    key_alias = serializers.CharField()
    key_state = serializers.CharField()


class NamespacePolicyStatusSerializer(serializers.ModelSerializer):
    """A namespace with its signing policy ({id, name, enabled} or null): TCR KmsSignPolicy."""

    instance_name = serializers.CharField(source="instance.name", read_only=True)
    signing_policy = serializers.SerializerMethodField()

    class Meta:
        model = Namespace
        fields = ["id", "instance", "instance_name", "name", "description", "signing_policy"]
        read_only_fields = fields

    @extend_schema_field(NamespaceSigningPolicySerializer(allow_null=True))
    def get_signing_policy(self, namespace: Namespace) -> dict[str, Any] | None:
        policies = list(namespace.signing_policies.all())
        if not policies:
            return None
        policy = policies[0]
        return {
            "id": policy.pk,
            "name": policy.name,
            "enabled": not policy.disabled,
            "key_id": str(policy.key_id),
            "key_alias": policy.key.alias,
            "key_state": policy.key.state,
        }
