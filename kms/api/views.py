"""KMS API views: validate with a serializer, call ``kms.services``, render the result.

Domain errors raised by the services propagate to ``config.api.exception_handler``,
which renders ``{"code", "message", "fields"?}`` with the error's HTTP status. ListKeys'
query parameters are ``kms.filtersets.KeyFilterSet``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TypeVar

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import exceptions, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from config.api import ActionPermission
from config.api import validated as _validated
from kms import filtersets, usage
from kms.api import serializers as s
from kms.models import Key, ServiceAuthorization
from kms.selectors import describe_key, list_keys
from kms.services.authorization import (
    active_service_authorization,
    grant_service_authorization,
    revoke_service_authorization,
)
from kms.services.keys import create_key, update_key_description
from kms.services.operations import get_public_key
from kms.services.states import cancel_key_deletion, disable_key, enable_key, schedule_key_deletion

_VIEW = "kms.view_key"
_STATE = "kms.manage_key_state"
_USE = "kms.use_key"


_KEY_ID = OpenApiParameter(
    "key_id",
    OpenApiTypes.STR,
    OpenApiParameter.PATH,
    description="The key's id (a UUID); anything else is answered 404 like an unknown key.",
)


_F = TypeVar("_F", bound=Callable[..., object])


def _state_change(summary: str) -> Callable[[_F], _F]:
    """The schema of an action taking no body and answering the key."""
    return extend_schema(
        summary=summary, parameters=[_KEY_ID], request=None, responses=s.KeySerializer
    )


@extend_schema_view(
    list=extend_schema(summary="ListKeys"),
    create=extend_schema(
        summary="CreateKey", request=s.KeyCreateSerializer, responses={201: s.KeySerializer}
    ),
    retrieve=extend_schema(summary="DescribeKey", parameters=[_KEY_ID]),
    partial_update=extend_schema(
        summary="UpdateKeyDescription",
        parameters=[_KEY_ID],
        request=s.KeyUpdateSerializer,
        responses=s.KeySerializer,
    ),
    public_key=extend_schema(
        summary="GetPublicKey", parameters=[_KEY_ID], responses=s.PublicKeySerializer
    ),
    sign=extend_schema(
        summary="SignByAsymmetricKey",
        parameters=[_KEY_ID],
        request=s.SignRequestSerializer,
        responses=s.SignResponseSerializer,
    ),
    verify=extend_schema(
        summary="VerifyByAsymmetricKey",
        parameters=[_KEY_ID],
        request=s.VerifyRequestSerializer,
        responses=s.VerifyResponseSerializer,
    ),
    enable=_state_change("EnableKey"),
    disable=_state_change("DisableKey"),
    schedule_deletion=extend_schema(
        summary="ScheduleKeyDeletion",
        parameters=[_KEY_ID],
        request=s.ScheduleDeletionSerializer,
        responses=s.KeySerializer,
    ),
    cancel_deletion=_state_change("CancelKeyDeletion"),
)
class KeyViewSet(viewsets.GenericViewSet):
    """Asymmetric signing keys (CreateKey, ListKeys, DescribeKey, GetPublicKey, ...)."""

    permission_classes = [ActionPermission]
    action_permissions = {
        "list": _VIEW,
        "retrieve": _VIEW,
        "public_key": _VIEW,
        "metadata": _VIEW,
        "create": "kms.add_key",
        "partial_update": "kms.change_key",
        "enable": _STATE,
        "disable": _STATE,
        "schedule_deletion": _STATE,
        "cancel_deletion": _STATE,
        "sign": _USE,
        "verify": _USE,
    }
    lookup_field = "key_id"
    # Any segment reaches the service, so a malformed id is CmkNotFound like an unknown one.
    lookup_value_regex = "[^/]+"
    serializer_class = s.KeySerializer
    filterset_class = filtersets.KeyFilterSet
    _input_serializers: dict[str, type[BaseSerializer]] = {
        "create": s.KeyCreateSerializer,
        "partial_update": s.KeyUpdateSerializer,
        "sign": s.SignRequestSerializer,
        "verify": s.VerifyRequestSerializer,
        "schedule_deletion": s.ScheduleDeletionSerializer,
    }

    # Rate-limited actions (``settings.THROTTLE_RATES``); the others are not throttled.
    _throttle_scopes = {"sign": "kms-sign", "verify": "verify"}

    def get_serializer_class(self) -> type[BaseSerializer]:
        return self._input_serializers.get(self.action or "", s.KeySerializer)

    def get_throttles(self):
        self.throttle_scope = self._throttle_scopes.get(self.action or "")
        return super().get_throttles()

    def get_queryset(self) -> QuerySet[Key]:
        return list_keys()  # filtered by ``filterset_class``

    def get_object(self) -> Key:
        return describe_key(key_id=self.kwargs[self.lookup_field])

    @property
    def _key_id(self) -> str:
        return self.kwargs[self.lookup_field]

    def _key_response(self, key: Key, status_code: int = status.HTTP_200_OK) -> Response:
        return Response(s.KeySerializer(key).data, status=status_code)

    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(s.KeySerializer(page, many=True).data)

    def create(self, request: Request) -> Response:
        data = _validated(s.KeyCreateSerializer, request)
        key = create_key(
            alias=data["alias"],
            description=data["description"],
            region=data["region"],
            key_usage=data["key_usage"],
            created_by=request.user,
        )
        return self._key_response(key, status.HTTP_201_CREATED)

    def retrieve(self, request: Request, key_id: str) -> Response:
        return self._key_response(self.get_object())

    def partial_update(self, request: Request, key_id: str) -> Response:
        data = _validated(s.KeyUpdateSerializer, request)
        key = update_key_description(key_id=key_id, description=data["description"])
        return self._key_response(key)

    @action(detail=True, methods=["get"], url_path="public-key")
    def public_key(self, request: Request, key_id: str) -> Response:
        info = get_public_key(key_id=key_id)
        return Response(s.PublicKeySerializer(info).data)

    @action(detail=True, methods=["post"])
    def sign(self, request: Request, key_id: str) -> Response:
        """SignByAsymmetricKey. ``service`` signs on behalf of an authorized service.
        Audited (``kms.usage``): key, caller, message digest, never the message."""
        data = _validated(s.SignRequestSerializer, request)
        signature = usage.sign(
            key_id=key_id,
            message=data["message"],
            algorithm=data["algorithm"],
            message_type=data["message_type"],
            on_behalf_of=data["service"],
            caller=request.user,
        )
        body = {
            "key_id": str(uuid.UUID(key_id)),  # canonical form; the service accepted it
            "signature": signature,
            "algorithm": data["algorithm"],
            "message_type": data["message_type"],
        }
        return Response(s.SignResponseSerializer(body).data)

    @action(detail=True, methods=["post"])
    def verify(self, request: Request, key_id: str) -> Response:
        data = _validated(s.VerifyRequestSerializer, request)
        valid = usage.verify(
            key_id=key_id,
            message=data["message"],
            signature=data["signature"],
            algorithm=data["algorithm"],
            message_type=data["message_type"],
            caller=request.user,
        )
        return Response({"signature_valid": valid})

    @action(detail=True, methods=["post"])
    def enable(self, request: Request, key_id: str) -> Response:
        return self._key_response(enable_key(key_id=key_id))

    @action(detail=True, methods=["post"])
    def disable(self, request: Request, key_id: str) -> Response:
        return self._key_response(disable_key(key_id=key_id))

    @action(detail=True, methods=["post"], url_path="schedule-deletion")
    def schedule_deletion(self, request: Request, key_id: str) -> Response:
        data = _validated(s.ScheduleDeletionSerializer, request)
        key = schedule_key_deletion(
            key_id=key_id, pending_window_in_days=data["pending_window_in_days"]
        )
        return self._key_response(key)

    @action(detail=True, methods=["post"], url_path="cancel-deletion")
    def cancel_deletion(self, request: Request, key_id: str) -> Response:
        return self._key_response(cancel_key_deletion(key_id=key_id))


@extend_schema_view(
    create=extend_schema(
        request=s.GrantServiceAuthorizationSerializer,
        responses={201: s.ServiceAuthorizationSerializer, 200: s.ServiceAuthorizationSerializer},
    ),
    revoke=extend_schema(
        request=s.RevokeServiceAuthorizationSerializer,
        responses=s.ServiceAuthorizationSerializer,
    ),
)
class ServiceAuthorizationViewSet(viewsets.GenericViewSet):
    """Grants letting a service (the registry signer) use KMS keys; history is kept."""

    permission_classes = [ActionPermission]
    action_permissions = {
        "list": "kms.view_serviceauthorization",
        "metadata": "kms.view_serviceauthorization",
        "create": "kms.add_serviceauthorization",
        "revoke": "kms.change_serviceauthorization",
    }
    serializer_class = s.ServiceAuthorizationSerializer

    def get_serializer_class(self) -> type[BaseSerializer]:
        if self.action == "create":
            return s.GrantServiceAuthorizationSerializer
        if self.action == "revoke":
            return s.RevokeServiceAuthorizationSerializer
        return s.ServiceAuthorizationSerializer

    def get_queryset(self):
        return ServiceAuthorization.objects.select_related("granted_by", "revoked_by").order_by(
            "-granted_at", "-id"
        )

    def list(self, request: Request) -> Response:
        """The whole history, newest grant first."""
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(s.ServiceAuthorizationSerializer(page, many=True).data)

    def create(self, request: Request) -> Response:
        """Grant. Idempotent: 201 with the new grant, or 200 with the grant already active."""
        data = _validated(s.GrantServiceAuthorizationSerializer, request)
        before = active_service_authorization(data["service"])
        grant = grant_service_authorization(
            service=data["service"], granted_by=request.user, note=data["note"]
        )
        created = before is None or before.pk != grant.pk
        return Response(
            s.ServiceAuthorizationSerializer(grant).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )

    @action(detail=False, methods=["post"])
    def revoke(self, request: Request) -> Response:
        """Revoke the active grant: 200 with the record, now revoked.

        When the service has no active grant there is nothing to revoke: 404 with
        code ``ResourceNotFound`` (an unknown service name is 400, field ``service``).
        """
        data = _validated(s.RevokeServiceAuthorizationSerializer, request)
        grant = revoke_service_authorization(service=data["service"], revoked_by=request.user)
        if grant is None:
            raise exceptions.NotFound(
                f"The service {data['service']!r} has no active authorization to revoke."
            )
        return Response(s.ServiceAuthorizationSerializer(grant).data)
