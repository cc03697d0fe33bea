from __future__ import annotations

from typing import Any

from rest_framework import serializers

from audit import redaction
from audit.models import AuditEvent


class AuditEventSerializer(serializers.ModelSerializer):
    changes = serializers.JSONField(
        read_only=True, help_text='Changed fields: {"field": [before, after]}.'
    )
    details = serializers.JSONField(read_only=True, help_text="Scope, counts, error codes.")

    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "at",
            "actor_type",
            "actor",
            "actor_label",
            "source_ip",
            "action",
            "object_type",
            "object_id",
            "object_repr",
            "instance_name",
            "instance_id",
            "namespace_name",
            "changes",
            "details",
        ]
        read_only_fields = fields

    def to_representation(self, event: AuditEvent) -> dict[str, Any]:
        data = super().to_representation(event)
        request = self.context.get("request")
        if request is not None:
            for name in ("changes", "details"):
                data[name] = redaction.visible(event.object_type, data[name], request.user)
        return data
