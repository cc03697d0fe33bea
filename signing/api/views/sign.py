"""Signing on demand: ``POST sign/`` and the tag list's ``POST .../tags/<id>/sign/``."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import ScopedObjectPermission
from accounts.scoping import is_unscoped, scope_model, visible_namespaces
from config.api import validated as _validated
from registry.models import Instance, Manifest, Tag
from signing import services
from signing.api import serializers as s
from signing.api.permissions import SIGN, SigningActionPermission
from signing.api.views.common import listed_signatures, operation_result_body, resolve_instance
from signing.errors import ImageNotFound
from signing.services.operations import start_signing


def _sign_manifests(manifests: list[Manifest], request: Request) -> Response:
    """Starts an operation and answers at once: the workers sign (poll its ``url``)."""
    started = start_signing(manifests=manifests, actor=request.user)
    covered = services.manifests_with_children(manifests)
    return Response(
        operation_result_body(started, listed_signatures("manifest", [m.pk for m in covered]))
    )


def _describe_scope(data: dict[str, Any], instance: Instance) -> str:
    namespace = data["namespace"]
    repository = data.get("repository")
    if repository and not repository.startswith(f"{namespace}/"):
        repository = f"{namespace}/{repository}"
    if data.get("tags"):
        return f"tag(s) {', '.join(data['tags'])} of repository {repository}"
    if repository:
        return f"repository {repository}"
    return f"namespace {namespace}"


def _require_sign(request: Request, tags: list[Tag]) -> None:
    """403 unless the user may sign in every namespace of ``tags`` (all in its scope)."""
    if is_unscoped(request.user):
        return
    allowed = set(visible_namespaces(request.user, perm=SIGN).values_list("pk", flat=True))
    refused = sorted(
        {
            tag.manifest.repository.namespace.name
            for tag in tags
            if tag.manifest.repository.namespace_id not in allowed
        }
    )
    if refused:
        raise PermissionDenied(
            f"Signing in namespace(s) {', '.join(refused)} needs the operator role."
        )


class SignView(APIView):
    """``POST sign/``: TCR CreateSignature for a tag, a list of tags, a repository or a
    whole namespace. Starts an operation and answers at once (nothing is signed in the
    request): ``operation.url`` gives its progress; ``queued`` counts the images handed
    to the workers; and each signature's status as it stands."""

    permission_classes = [SigningActionPermission, ScopedObjectPermission]
    action = "sign"
    action_permissions = {"sign": SIGN}
    throttle_scope = "sign"

    @extend_schema(request=s.SignSerializer, responses=s.SignResultSerializer)
    def post(self, request: Request) -> Response:
        data = _validated(s.SignSerializer, request)
        instance = resolve_instance(data["instance"], user=request.user)
        tags = list(
            scope_model(
                services.tags_in_scope(
                    instance=instance,
                    namespace=data["namespace"],
                    repository=data.get("repository"),
                    tags=data.get("tags"),
                ),
                request.user,
            )
        )
        wanted = data.get("tags")
        missing = sorted(set(wanted) - {tag.name for tag in tags}) if wanted else []
        if not tags or missing:
            scope = _describe_scope(data, instance)
            detail = f" (not found: {', '.join(missing)})" if missing and tags else ""
            raise ImageNotFound(
                f"No image matches {scope} in instance {instance.name}{detail}; nothing "
                "was signed.",
            )
        _require_sign(request, tags)
        manifests = list({tag.manifest_id: tag.manifest for tag in tags}.values())
        return _sign_manifests(manifests, request)


class SignTagView(APIView):
    """``POST /api/v1/registry/tags/<id>/sign/``: the tag list's Sign button."""

    permission_classes = [SigningActionPermission, ScopedObjectPermission]
    action = "sign"
    action_permissions = {"sign": SIGN}
    throttle_scope = "sign"

    @extend_schema(
        request=None,
        responses=s.SignResultSerializer,
        parameters=[
            OpenApiParameter(
                "tag_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The tag's id."
            )
        ],
    )
    def post(self, request: Request, tag_id: int) -> Response:
        tag = (
            scope_model(Tag.objects.select_related("manifest__repository__namespace"), request.user)
            .filter(pk=tag_id)
            .first()
        )
        if tag is None:
            raise ImageNotFound(f"No tag with id {tag_id}.")
        _require_sign(request, [tag])
        return _sign_manifests([tag.manifest], request)
