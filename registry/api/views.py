"""Registry API views: validate with a serializer, call ``registry.services``, render.

Every list runs a fixed number of queries whatever its length (``select_related``,
``prefetch_related`` and annotations). Each list's query parameters are a FilterSet of
``registry.filtersets``. Domain errors propagate to ``config.api.exception_handler``.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Prefetch, QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from accounts.permissions import ScopedObjectPermission
from accounts.scoping import scope_model, visible_instances
from config.api import ActionPermission
from config.api import validated as _validated
from config.errors import ValidationFailed
from registry import filtersets, services
from registry.api import serializers as s
from registry.models import Instance, InstanceDomain, Manifest, Namespace, Repository, Tag


def _no_store(response: Response) -> Response:
    """An answer carrying a token: no browser or proxy may keep a copy."""
    response["Cache-Control"] = "no-store"
    return response


def _read_only(model: str) -> dict[str, str]:
    perm = f"registry.view_{model}"
    return {"list": perm, "retrieve": perm, "metadata": perm}


@extend_schema_view(
    create=extend_schema(
        request=s.InstanceCreateSerializer, responses={201: s.InstanceWithTokenSerializer}
    ),
    update=extend_schema(request=s.InstanceUpdateSerializer, responses=s.InstanceSerializer),
    partial_update=extend_schema(
        request=s.InstanceUpdateSerializer, responses=s.InstanceSerializer
    ),
    destroy=extend_schema(responses={204: None}),
    rotate_webhook_token=extend_schema(request=None, responses=s.WebhookTokenSerializer),
)
class InstanceViewSet(viewsets.GenericViewSet):
    """Registry instances. The webhook token is returned by create and rotate only."""

    permission_classes = [ActionPermission, ScopedObjectPermission]
    action_permissions = {
        **_read_only("instance"),
        "create": "registry.add_instance",
        "update": "registry.change_instance",
        "partial_update": "registry.change_instance",
        "rotate_webhook_token": "registry.change_instance",
        "destroy": "registry.delete_instance",
    }
    serializer_class = s.InstanceSerializer
    filterset_class = filtersets.InstanceFilterSet

    def get_serializer_class(self) -> type[BaseSerializer]:
        if self.action == "create":
            return s.InstanceCreateSerializer
        if self.action in ("update", "partial_update"):
            return s.InstanceUpdateSerializer
        return s.InstanceSerializer

    def get_queryset(self) -> QuerySet[Instance]:
        queryset = (
            Instance.objects.annotate(namespace_count=Count("namespaces", distinct=True))
            .prefetch_related(Prefetch("domains", queryset=InstanceDomain.objects.order_by("name")))
            .order_by("name")
        )
        if self.action != "create":  # the creator sees what it created, granted or not
            queryset = scope_model(queryset, self.request.user)
        return queryset

    def _with_token(self, instance: Instance, token: str) -> dict[str, Any]:
        url = self.request.build_absolute_uri(services.webhook_path(instance=instance))
        return {
            "webhook_url": url,
            "webhook_token": token,
            "notifications_config": services.notifications_config(
                instance=instance, token=token, webhook_url=url
            ),
        }

    def _fresh(self, instance: Instance) -> Instance:
        return self.get_queryset().get(pk=instance.pk)

    def _out(self, instance: Any, **kwargs: Any) -> Any:
        """Readers see no backend URL, username or secret_env: only instance editors do."""
        show = self.action == "create" or self.request.user.has_perm("registry.change_instance")
        return s.InstanceSerializer(instance, context={"show_connection": show}, **kwargs).data

    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(self._out(page, many=True))

    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(self._out(self.get_object()))

    def create(self, request: Request) -> Response:
        """The response carries the webhook token and the registry config ONCE."""
        data = _validated(s.InstanceCreateSerializer, request)
        instance, token = services.create_instance(
            name=data["name"],
            region=data["region"] or None,
            description=data["description"],
            backend_url=data["backend_url"],
            auth_type=data["auth_type"],
            username=data["username"],
            secret=data["secret"],
            secret_env=data["secret_env"],
            default_domain=data["default_domain"],
            custom_domains=data["custom_domains"],
        )
        body = {**self._out(self._fresh(instance)), **self._with_token(instance, token)}
        return _no_store(Response(body, status=status.HTTP_201_CREATED))

    def partial_update(self, request: Request, pk: str) -> Response:
        instance = self.get_object()
        data = _validated(s.InstanceUpdateSerializer, request, instance)
        instance = services.update_instance(instance=instance, **data)
        return Response(self._out(self._fresh(instance)))

    update = partial_update

    def destroy(self, request: Request, pk: str) -> Response:
        services.delete_instance(instance=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @action(detail=True, methods=["post"], url_path="rotate-webhook-token")
    def rotate_webhook_token(self, request: Request, pk: str) -> Response:
        """A new token (the old one stops working); returned once with the config block."""
        instance = self.get_object()
        token = services.rotate_webhook_token(instance=instance)
        return _no_store(Response(self._with_token(instance, token)))


@extend_schema_view(
    create=extend_schema(
        request=s.NamespaceCreateSerializer, responses={201: s.NamespaceSerializer}
    ),
    update=extend_schema(request=s.NamespaceUpdateSerializer, responses=s.NamespaceSerializer),
    partial_update=extend_schema(
        request=s.NamespaceUpdateSerializer, responses=s.NamespaceSerializer
    ),
    destroy=extend_schema(responses={204: None}),
)
class NamespaceViewSet(viewsets.GenericViewSet):
    permission_classes = [ActionPermission, ScopedObjectPermission]
    action_permissions = {
        **_read_only("namespace"),
        "create": "registry.add_namespace",
        "update": "registry.change_namespace",
        "partial_update": "registry.change_namespace",
        "destroy": "registry.delete_namespace",
    }
    serializer_class = s.NamespaceSerializer
    filterset_class = filtersets.NamespaceFilterSet

    def get_serializer_class(self) -> type[BaseSerializer]:
        if self.action == "create":
            return s.NamespaceCreateSerializer
        if self.action in ("update", "partial_update"):
            return s.NamespaceUpdateSerializer
        return s.NamespaceSerializer

    def get_queryset(self) -> QuerySet[Namespace]:
        queryset = (
            Namespace.objects.select_related("instance")
            .annotate(repository_count=Count("repositories", distinct=True))
            .order_by("instance__name", "name")
        )
        if self.action != "create":  # the creator sees what it created, granted or not
            queryset = scope_model(queryset, self.request.user)
        return queryset

    def _fresh(self, namespace: Namespace) -> Namespace:
        return self.get_queryset().get(pk=namespace.pk)

    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(s.NamespaceSerializer(page, many=True).data)

    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(s.NamespaceSerializer(self.get_object()).data)

    def create(self, request: Request) -> Response:
        data = _validated(s.NamespaceCreateSerializer, request)
        instance = visible_instances(request.user).filter(pk=data["instance"]).first()
        if instance is None:
            raise ValidationFailed(
                f"Invalid instance: no instance with id {data['instance']}.",
                fields={"instance": [f"No instance with id {data['instance']}."]},
            )
        namespace = services.create_namespace(
            instance=instance, name=data["name"], description=data["description"]
        )
        return Response(
            s.NamespaceSerializer(self._fresh(namespace)).data, status=status.HTTP_201_CREATED
        )

    def partial_update(self, request: Request, pk: str) -> Response:
        namespace = self.get_object()
        data = _validated(s.NamespaceUpdateSerializer, request, namespace)
        namespace = services.update_namespace(namespace=namespace, description=data["description"])
        return Response(s.NamespaceSerializer(self._fresh(namespace)).data)

    update = partial_update

    def destroy(self, request: Request, pk: str) -> Response:
        """Deletes Signet's records of the namespace (not the images in the registry)."""
        services.delete_namespace(namespace=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class _ReadOnlyViewSet(viewsets.ReadOnlyModelViewSet):
    permission_classes = [ActionPermission, ScopedObjectPermission]


class RepositoryViewSet(_ReadOnlyViewSet):
    action_permissions = _read_only("repository")
    serializer_class = s.RepositorySerializer
    filterset_class = filtersets.RepositoryFilterSet

    def get_queryset(self) -> QuerySet[Repository]:
        queryset = (
            Repository.objects.select_related("namespace__instance")
            .annotate(tag_count=Count("tags", distinct=True))
            .order_by("name", "id")
        )
        return scope_model(queryset, self.request.user)


class TagViewSet(_ReadOnlyViewSet):
    """Tags, newest move first. Filters: instance, namespace, repository, name, search, digest."""

    action_permissions = _read_only("tag")
    serializer_class = s.TagSerializer
    filterset_class = filtersets.TagFilterSet

    def get_queryset(self) -> QuerySet[Tag]:
        return scope_model(
            services.tags_queryset().order_by("-updated_at", "-id"), self.request.user
        )


class ManifestViewSet(_ReadOnlyViewSet):
    """Manifests with their tags and (for an index) children. Filters: instance, namespace,
    repository, digest, media_type."""

    action_permissions = _read_only("manifest")
    serializer_class = s.ManifestSerializer
    filterset_class = filtersets.ManifestFilterSet

    def get_queryset(self) -> QuerySet[Manifest]:
        queryset = (
            services.manifests_queryset()
            .prefetch_related("tags", "child_references")
            .order_by("-pushed_at", "-id")
        )
        return scope_model(queryset, self.request.user)
