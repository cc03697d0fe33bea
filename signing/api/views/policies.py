"""``/api/v1/signing/policies/``: namespace signing policies.

Deleting a policy answers ``200 {"signatures_removed": N}`` (not 204): the number of
signature records removed with it, whose registry artifacts are removed too.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Q, QuerySet
from django.http import Http404
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from accounts.permissions import ScopedObjectPermission
from accounts.scoping import scope_model, visible_namespaces
from config.api import validated as _validated
from config.errors import ValidationFailed
from signing import filtersets, services
from signing.api import serializers as s
from signing.api.permissions import SIGN, VIEW_POLICY, SigningActionPermission
from signing.api.views.common import listed_signatures, operation_result_body, resolve_instance
from signing.api.views.operations import operation_ref
from signing.errors import NothingToDo, PolicyNotFound
from signing.models import SignatureStatus, SigningPolicy
from signing.services.operations import (
    Started,
    start_policy_deletion,
    start_resign,
    start_retry,
)


def _covered(started: Started) -> list[int]:
    """The signature rows the operation covers (ids)."""
    return list(
        started.operation.items.order_by("signature_id").values_list("signature_id", flat=True)
    )


def policy_queryset() -> QuerySet[SigningPolicy]:
    return (
        SigningPolicy.objects.select_related("namespace__instance", "key", "created_by")
        .defer("key__sealed_private_key")
        .annotate(
            signed_count=Count("signatures", filter=Q(signatures__status=SignatureStatus.SIGNED)),
            pending_count=Count("signatures", filter=Q(signatures__status=SignatureStatus.PENDING)),
            failed_count=Count("signatures", filter=Q(signatures__status=SignatureStatus.FAILED)),
        )
        .order_by("namespace__instance__name", "namespace__name")
    )


@extend_schema_view(
    create=extend_schema(
        request=s.PolicyCreateSerializer, responses={201: s.PolicyCreatedSerializer}
    ),
    update=extend_schema(request=s.PolicyUpdateSerializer, responses=s.PolicyUpdatedSerializer),
    partial_update=extend_schema(
        request=s.PolicyUpdateSerializer, responses=s.PolicyUpdatedSerializer
    ),
    destroy=extend_schema(responses=s.PolicyDeletedSerializer),
    delete_preview=extend_schema(responses=s.PolicyDeletePreviewSerializer),
    resign=extend_schema(request=None, responses=s.SignResultSerializer),
    retry=extend_schema(request=None, responses=s.PolicyRetryResultSerializer),
)
class PolicyViewSet(viewsets.GenericViewSet):
    """Namespace signing policies (TCR Create/Describe/Modify/DeleteSignaturePolicy)."""

    permission_classes = [SigningActionPermission, ScopedObjectPermission]
    action_permissions = {
        "list": VIEW_POLICY,
        "retrieve": VIEW_POLICY,
        "metadata": VIEW_POLICY,
        "delete_preview": VIEW_POLICY,
        "create": "signing.add_signingpolicy",
        "partial_update": "signing.change_signingpolicy",
        "update": "signing.change_signingpolicy",
        "destroy": "signing.delete_signingpolicy",
        "resign": SIGN,
        "retry": SIGN,
    }
    serializer_class = s.PolicySerializer
    filterset_class = filtersets.PolicyFilterSet
    _throttle_scopes = {"resign": "bulk-sign", "retry": "bulk-sign"}

    def get_throttles(self):
        self.throttle_scope = self._throttle_scopes.get(self.action or "")
        return super().get_throttles()

    def get_serializer_class(self) -> type[BaseSerializer]:
        if self.action == "create":
            return s.PolicyCreateSerializer
        if self.action in ("update", "partial_update"):
            return s.PolicyUpdateSerializer
        return s.PolicySerializer

    def get_queryset(self) -> QuerySet[SigningPolicy]:
        return scope_model(policy_queryset(), self.request.user)

    def get_object(self) -> SigningPolicy:
        try:
            return super().get_object()
        except Http404:
            raise PolicyNotFound(f"No signing policy with id {self.kwargs['pk']}.") from None

    def _render(self, policy: SigningPolicy, **extra: Any) -> dict[str, Any]:
        fresh = policy_queryset().get(pk=policy.pk)
        return {**s.PolicySerializer(fresh).data, **extra}

    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(s.PolicySerializer(page, many=True).data)

    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(s.PolicySerializer(self.get_object()).data)

    def create(self, request: Request) -> Response:
        """Validated exactly as in the admin (``signing.services.create_policy``).

        The answer adds ``warnings`` (for example a key in another region).
        """
        data = _validated(s.PolicyCreateSerializer, request)
        instance = resolve_instance(data["instance"], as_field_error=True, user=request.user)
        namespace = (
            visible_namespaces(request.user)
            .filter(instance=instance, name=data["namespace"])
            .first()
        )
        if namespace is None:
            message = f"Instance {instance.name} has no namespace {data['namespace']!r}."
            raise ValidationFailed(message, fields={"namespace": [message]})
        if not request.user.has_perm("signing.add_signingpolicy", namespace):
            raise PermissionDenied(
                f"Creating a policy in namespace {namespace.name} needs the operator role."
            )
        outcome = services.create_policy(
            namespace=namespace,
            name=data["name"],
            key=data["key"],
            domain=data["domain"] or None,
            kms_region=data["kms_region"] or None,
            disabled=data["disabled"],
            created_by=request.user,
        )
        return Response(
            self._render(outcome.policy, warnings=outcome.warnings),
            status=status.HTTP_201_CREATED,
        )

    def partial_update(self, request: Request, pk: str) -> Response:
        """Change name, key, domain or disabled. ``resign_candidates`` counts the images
        signed with another key than the policy's (re-sign them with ``resign``)."""
        policy = self.get_object()
        data = _validated(s.PolicyUpdateSerializer, request)
        outcome = services.update_policy(policy=policy, **data)
        return Response(
            self._render(
                outcome.policy,
                warnings=outcome.warnings,
                resign_candidates=outcome.resign_candidates,
            )
        )

    update = partial_update

    def destroy(self, request: Request, pk: str) -> Response:
        """Deletes the policy and its signature records; the removal of their registry
        artifacts is an operation (``operation.url`` gives its progress)."""
        started = start_policy_deletion(policy=self.get_object(), actor=request.user)
        return Response(
            {"signatures_removed": started.requested, "operation": operation_ref(started)}
        )

    @action(detail=True, methods=["get"], url_path="delete-preview")
    def delete_preview(self, request: Request, pk: str) -> Response:
        policy = self.get_object()
        count = services.signatures_removed_by_deleting(policy)
        return Response(
            {
                "signatures_to_remove": count,
                "warning": (
                    f"Deleting policy {policy.name} removes the {count} signature(s) of "
                    f"namespace {policy.namespace.name} (records and registry artifacts); "
                    "verifying those images will then fail."
                ),
            }
        )

    @action(detail=True, methods=["post"])
    def resign(self, request: Request, pk: str) -> Response:
        """Re-sign, with the policy's current key, every image an earlier key signed.
        Starts an operation and answers at once; 409 ``OperationInProgress`` while a
        re-sign of this policy runs."""
        policy = self.get_object()
        try:
            started: Started | None = start_resign(policy=policy, actor=request.user)
        except NothingToDo:
            started = None
        ids = [] if started is None else _covered(started)
        return Response(operation_result_body(started, listed_signatures("pk", ids)))

    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str) -> Response:
        """Sign the policy's failed signatures again, now (no backoff wait): starts an
        operation and answers at once."""
        policy = self.get_object()
        try:
            started: Started | None = start_retry(policy=policy, actor=request.user)
        except NothingToDo:
            started = None
        ids = [] if started is None else _covered(started)
        body = operation_result_body(started, listed_signatures("pk", ids))
        return Response(
            {
                "operation": body["operation"],
                "retried": len(ids),
                **{key: body[key] for key in ("signed", "failed", "skipped", "failures")},
                **{key: body[key] for key in ("signatures", "signatures_truncated")},
            }
        )
