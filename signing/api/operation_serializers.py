"""The signing API's operation resource (``/api/v1/signing/operations/``)."""

from __future__ import annotations

from django.urls import reverse
from rest_framework import serializers

from signing.models import SigningOperation
from signing.selectors import Progress, progress_of


class OperationSerializer(serializers.ModelSerializer):
    """A signing operation and its progress (``signing.selectors.progress_of``)."""

    state = serializers.SerializerMethodField(
        help_text='"running" while rows wait for a worker, then "finished".'
    )
    total = serializers.SerializerMethodField(help_text="Rows (images) it covers.")
    pending = serializers.SerializerMethodField(help_text="Not signed and not failed yet.")
    signed = serializers.SerializerMethodField(help_text="Signed since the operation started.")
    failed = serializers.SerializerMethodField(
        help_text="Failed since it started (retried later on their own, with a backoff)."
    )
    removed = serializers.SerializerMethodField(
        help_text="Policy deletion: .sig artifacts removed from the registry."
    )
    created_by: serializers.SlugRelatedField = serializers.SlugRelatedField(
        slug_field="username", read_only=True
    )
    instance: serializers.SlugRelatedField = serializers.SlugRelatedField(
        slug_field="name", read_only=True
    )
    namespace = serializers.CharField(source="namespace_name", read_only=True)
    url = serializers.SerializerMethodField(help_text="This resource.")
    progress_url = serializers.SerializerMethodField(help_text="The admin's live progress page.")

    class Meta:
        model = SigningOperation
        fields = [
            "id",
            "kind",
            "state",
            "total",
            "pending",
            "signed",
            "failed",
            "removed",
            "requested",
            "already_signed",
            "no_policy",
            "policy",
            "instance",
            "namespace",
            "created_by",
            "created_at",
            "finished_at",
            "url",
            "progress_url",
        ]
        read_only_fields = fields

    def _progress(self, obj: SigningOperation) -> Progress:
        return progress_of(obj)

    def get_state(self, obj: SigningOperation) -> str:
        return self._progress(obj).state

    def get_total(self, obj: SigningOperation) -> int:
        return self._progress(obj).total

    def get_pending(self, obj: SigningOperation) -> int:
        return self._progress(obj).pending

    def get_signed(self, obj: SigningOperation) -> int:
        return self._progress(obj).signed

    def get_failed(self, obj: SigningOperation) -> int:
        return self._progress(obj).failed

    def get_removed(self, obj: SigningOperation) -> int:
        return self._progress(obj).removed

    def get_url(self, obj: SigningOperation) -> str:
        return reverse("signing-operation-detail", args=[obj.pk])

    def get_progress_url(self, obj: SigningOperation) -> str:
        return reverse("admin:signing_signingoperation_progress", args=[obj.pk])
