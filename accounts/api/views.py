"""``POST /api/v1/auth/token/`` creates (or rotates) the caller's own API token and
returns it once; ``DELETE`` revokes it. Authenticated by session or token."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import NotFound
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView


class TokenView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=None,
        responses={
            201: inline_serializer(
                "ApiToken", {"token": serializers.CharField(), "username": serializers.CharField()}
            )
        },
    )
    def post(self, request: Request) -> Response:
        """A new token for the caller (any previous one stops working); shown once."""
        user: Any = request.user
        with transaction.atomic():
            Token.objects.filter(user=user).delete()
            token = Token.objects.create(user=user)
        return Response(
            {"token": token.key, "username": request.user.get_username()},
            status=status.HTTP_201_CREATED,
        )

    @extend_schema(request=None, responses={204: None})
    def delete(self, request: Request) -> Response:
        """Revoke the caller's token (404 when there is none)."""
        user: Any = request.user
        deleted, _ = Token.objects.filter(user=user).delete()
        if not deleted:
            raise NotFound("You have no API token.")
        return Response(status=status.HTTP_204_NO_CONTENT)
