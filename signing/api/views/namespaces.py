"""``/api/v1/signing/namespaces/``: namespaces with their signing policy."""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet
from rest_framework import viewsets

from accounts.permissions import ScopedObjectPermission
from accounts.scoping import scope_model
from registry.models import Namespace
from signing import filtersets
from signing.api import serializers as s
from signing.api.permissions import VIEW_POLICY, SigningActionPermission
from signing.models import SigningPolicy


class NamespacePolicyViewSet(viewsets.ReadOnlyModelViewSet):
    """Namespaces with their signing policy (TCR DescribeNamespaces, filter KmsSignPolicy).

    Filters: ``instance`` (id or name), ``kms_sign_policy=true|false`` (has a policy),
    ``enabled=true|false`` (has an enabled policy / has none or a disabled one), ``search``.
    """

    permission_classes = [SigningActionPermission, ScopedObjectPermission]
    _view = ("registry.view_namespace", VIEW_POLICY)
    action_permissions = {"list": _view, "retrieve": _view, "metadata": _view}
    serializer_class = s.NamespacePolicyStatusSerializer
    filterset_class = filtersets.NamespacePolicyFilterSet

    def get_queryset(self) -> QuerySet[Namespace]:
        queryset = (
            Namespace.objects.select_related("instance")
            .prefetch_related(
                Prefetch(
                    "signing_policies",
                    queryset=SigningPolicy.objects.select_related("key").defer(
                        "key__sealed_private_key"
                    ),
                )
            )
            .order_by("instance__name", "name")
        )
        return scope_model(queryset, self.request.user)
