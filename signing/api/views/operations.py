"""``/api/v1/signing/operations/``: bulk sign, re-sign, retry, sign-existing and policy
deletion requests, with their progress (read like signatures: same permission, same scope).
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.urls import reverse
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import viewsets

from accounts.permissions import ScopedObjectPermission
from accounts.scoping import scope_model
from config.filters import ChoiceParamFilter, FilterSet, IdFilter, IdOrNameFilter
from signing.api.operation_serializers import OperationSerializer
from signing.api.permissions import VIEW_SIGNATURE, SigningActionPermission
from signing.errors import SigningError
from signing.models import OperationKind, SigningOperation
from signing.selectors import operations_with_progress
from signing.services.operations import Started, settle


class OperationNotFound(SigningError):
    code = "OperationNotFound"
    http_status = 404
    default_message = "No such signing operation."


class OperationFilterSet(FilterSet):
    kind = ChoiceParamFilter("kind", choices=OperationKind.values, help_text="Only this kind.")
    policy = IdFilter("policy_id", help_text="Only those of this policy (its numeric id).")
    instance = IdOrNameFilter(
        "instance", help_text="Only those of this instance (its id or its name)."
    )


def operation_ref(started: Started | None) -> dict[str, Any] | None:
    """How a sign/re-sign/retry answer names the operation it started."""
    if started is None:
        return None
    pk = started.operation.pk
    return {
        "id": pk,
        "url": reverse("signing-operation-detail", args=[pk]),
        "progress_url": reverse("admin:signing_signingoperation_progress", args=[pk]),
    }


@extend_schema_view(
    list=extend_schema(summary="List signing operations (newest first)"),
    retrieve=extend_schema(summary="A signing operation and its progress"),
)
class OperationViewSet(viewsets.ReadOnlyModelViewSet):
    """Operations started by people (bulk sign, re-sign, retry failed, sign existing
    images, policy deletion). ``state`` is "running" until no row is pending; counts are
    read from the rows at each request (poll ``GET .../operations/<id>/``)."""

    permission_classes = [SigningActionPermission, ScopedObjectPermission]
    action_permissions = {
        "list": VIEW_SIGNATURE,
        "retrieve": VIEW_SIGNATURE,
        "metadata": VIEW_SIGNATURE,
    }
    serializer_class = OperationSerializer
    filterset_class = OperationFilterSet

    def get_queryset(self) -> QuerySet[SigningOperation]:
        return scope_model(operations_with_progress(), self.request.user)

    def get_object(self) -> SigningOperation:
        pk = self.kwargs.get("pk", "")
        operation = self.get_queryset().filter(pk=int(pk)).first() if pk.isdigit() else None
        if operation is None:
            raise OperationNotFound(f"No signing operation with id {pk}.")
        self.check_object_permissions(self.request, operation)
        settle(operation)  # nothing pending any more: record when it finished
        return operation
