"""``/api/v1/signing/signatures/``: signature records, and signing one again now."""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.permissions import ScopedObjectPermission
from accounts.scoping import scope_model
from registry.models import Tag
from signing import filtersets, services
from signing.api import serializers as s
from signing.api.permissions import SIGN, VIEW_SIGNATURE, SigningActionPermission
from signing.models import Signature


def signature_queryset() -> QuerySet[Signature]:
    return (
        Signature.objects.select_related(
            "policy__namespace__instance", "manifest__repository", "triggered_by"
        )
        .prefetch_related(
            Prefetch("manifest__tags", queryset=Tag.objects.only("id", "name", "manifest_id"))
        )
        .order_by("-updated_at", "-id")
    )


@extend_schema_view(
    retry=extend_schema(request=None, responses=s.SignatureRetryResultSerializer),
)
class SignatureViewSet(viewsets.ReadOnlyModelViewSet):
    """Signature records. Filters: status, trigger, policy, instance (id or name),
    namespace (id), namespace_name, repository (id), repository_name, digest."""

    permission_classes = [SigningActionPermission, ScopedObjectPermission]
    action_permissions = {
        "list": VIEW_SIGNATURE,
        "retrieve": VIEW_SIGNATURE,
        "metadata": VIEW_SIGNATURE,
        "retry": SIGN,
    }
    serializer_class = s.SignatureSerializer
    filterset_class = filtersets.SignatureFilterSet

    def get_throttles(self):
        self.throttle_scope = "sign" if self.action == "retry" else None
        return super().get_throttles()

    def get_queryset(self) -> QuerySet[Signature]:
        return scope_model(signature_queryset(), self.request.user)

    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str) -> Response:
        """Sign this row now (a failed or pending one; a signed one is left as it is)."""
        signature = self.get_object()
        outcome = services.retry_now(signatures=[signature])
        fresh = signature_queryset().get(pk=signature.pk)
        return Response(
            {
                "signed": outcome.signed,
                "failed": outcome.failed,
                "skipped": outcome.skipped,
                "signature": s.SignatureSerializer(fresh).data,
            }
        )
