"""``POST verify/``: check an image's signature against its namespace policy's key."""

from __future__ import annotations

from typing import Any

from django.db.models import Q
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import ScopedObjectPermission
from accounts.scoping import is_unscoped, visible_instances, visible_namespaces
from config.api import validated as _validated
from registry.models import Namespace
from signing import verification
from signing.api import serializers as s
from signing.api.permissions import VIEW_SIGNATURE, SigningActionPermission
from signing.errors import ImageNotFound


def _verifiable_instances(request: Request, image: str) -> Any:
    """The instances the user may verify in (None: all); an image of a namespace outside
    the user's scope answers ImageNotFound, like an unknown one."""
    user = request.user
    if is_unscoped(user):
        return None
    ref = verification.parse_image(image)
    namespace_name = ref.repository.split("/", 1)[0]
    hidden = Namespace.objects.filter(
        Q(instance__default_domain=ref.domain) | Q(instance__domains__name=ref.domain),
        name=namespace_name,
    ).exclude(pk__in=visible_namespaces(user, perm=VIEW_SIGNATURE).values("pk"))
    if hidden.exists():
        raise ImageNotFound(f"No registry instance answers to domain {ref.domain}.")
    return visible_instances(user, perm=VIEW_SIGNATURE)


class VerifyView(APIView):
    """``POST verify/ {"image": "<domain>/<ns>/<repo>:<tag>"}`` (or ``@sha256:<hex>``).

    Reads the ``.sig`` artifact from the registry and checks it against the namespace
    policy's key: 200 with ``verified`` and the reasons either way; 400 for a malformed
    image, 404 for an unknown domain or image, 409 when the namespace has no policy.
    """

    permission_classes = [SigningActionPermission, ScopedObjectPermission]
    action = "verify"
    action_permissions = {"verify": VIEW_SIGNATURE}
    throttle_scope = "verify"

    @extend_schema(request=s.VerifySerializer, responses=s.VerificationResultSerializer)
    def post(self, request: Request) -> Response:
        data = _validated(s.VerifySerializer, request)
        result = verification.verify_image(
            image=data["image"], instances=_verifiable_instances(request, data["image"])
        )
        return Response(result.as_dict())
