"""``POST /api/v1/auth/token/`` gives the caller a new API token, shown once, and revokes
the ones it had (a rotation); ``DELETE`` revokes them. Authenticated by session or token.

A rotation never extends a token's life: asked with a token, the new token expires no
later than that token (a leaked token cannot renew itself forever); asked from a
signed-in session (someone who knows the password), it gets the full API_TOKEN_TTL.

Answers carrying a token say ``Cache-Control: no-store``: no proxy or browser cache may
keep them.
"""

from __future__ import annotations

from typing import Any

from django.utils.cache import add_never_cache_headers
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apitokens import services
from apitokens.models import ApiToken

ISSUED = inline_serializer(
    "ApiToken",
    {
        "token": serializers.CharField(help_text="The token: shown this once, stored hashed."),
        "username": serializers.CharField(),
        "prefix": serializers.CharField(
            help_text="The token's first characters, as the admin and the audit log show it."
        ),
        "expires": serializers.DateTimeField(
            allow_null=True,
            help_text="When the token stops working (null: never): after "
            "API_TOKEN_TTL, and never later than the token that asked for it.",
        ),
    },
)


def no_store(response: Response) -> Response:
    add_never_cache_headers(response)  # Cache-Control: max-age=0, no-cache, no-store, ...
    return response


class TokenView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=None,
        responses={201: OpenApiResponse(ISSUED, description="The new token, shown once.")},
        parameters=[
            OpenApiParameter(
                "Cache-Control",
                str,
                OpenApiParameter.HEADER,
                response=[201],
                description="Includes `no-store`: no cache may keep the answer.",
            )
        ],
    )
    def post(self, request: Request) -> Response:
        """A new token for the caller (every previous one stops working); shown once.

        It expires after API_TOKEN_TTL days (`expires`), except that a rotation never
        extends a token's life: called with `Authorization: Token`, the new token expires
        no later than the calling token (a token that never expires sets no limit of its
        own, so its replacement gets API_TOKEN_TTL). Called from a signed-in session, the
        new token gets the full API_TOKEN_TTL."""
        user: Any = request.user
        # Session authentication leaves ``request.auth`` None: no calling token to cap by.
        caller = request.auth if isinstance(request.auth, ApiToken) else None
        issued = services.rotate_token(user, caller=caller)
        return no_store(
            Response(
                {
                    "token": issued.token,
                    "username": user.get_username(),
                    "prefix": issued.row.prefix,
                    "expires": issued.row.expiry,
                },
                status=status.HTTP_201_CREATED,
            )
        )

    @extend_schema(request=None, responses={204: None})
    def delete(self, request: Request) -> Response:
        """Revoke the caller's tokens (404 when there is none)."""
        if not services.revoke_user_tokens(request.user, reason="revoked by its user"):
            raise NotFound("You have no API token.")
        return Response(status=status.HTTP_204_NO_CONTENT)
