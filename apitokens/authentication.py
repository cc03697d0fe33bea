"""``Authorization: Token <token>`` against the hashed tokens (django-rest-knox).

Unlike knox's own class, an expired token is refused with a message saying so (and stays
in the table, so the next attempt says the same), and no other row is deleted as a side
effect of reading one.
"""

from __future__ import annotations

import binascii
from hmac import compare_digest
from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from knox.auth import TokenAuthentication
from knox.crypto import hash_token
from knox.settings import CONSTANTS
from rest_framework import exceptions

from apitokens.models import ApiToken


class TokenExpired(exceptions.AuthenticationFailed):
    default_code = "token_expired"
    error_code = "AuthFailure.TokenExpired"  # the API's ``code`` (config.api)


class ApiTokenAuthentication(TokenAuthentication):
    def authenticate_credentials(self, token: bytes) -> tuple[Any, ApiToken]:
        try:
            text = token.decode("ascii")
            digest = hash_token(text)
        except (UnicodeDecodeError, TypeError, binascii.Error):
            raise exceptions.AuthenticationFailed("Invalid token.") from None
        if not text.isprintable():  # a NUL would fail the lookup on PostgreSQL (500)
            raise exceptions.AuthenticationFailed("Invalid token.")
        candidates = ApiToken.objects.select_related("user").filter(
            token_key=text[: CONSTANTS.TOKEN_KEY_LENGTH]
        )
        for row in candidates:
            if not compare_digest(digest, row.digest):
                continue
            if row.expired:
                raise TokenExpired(
                    f"Token expired at {row.expiry:%Y-%m-%d %H:%M} UTC: get a new one "
                    "(POST /api/v1/auth/token/ with a signed-in session)."
                )
            if not row.user.is_active:
                raise exceptions.AuthenticationFailed("User inactive or deleted.")
            return row.user, row
        raise exceptions.AuthenticationFailed("Invalid token.")


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = "apitokens.authentication.ApiTokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        scheme = build_bearer_security_scheme_object(
            header_name="Authorization", token_prefix=self.target.authenticate_header(None)
        )
        scheme["description"] = (
            "`Authorization: Token <token>`: a token from POST /api/v1/auth/token/. Tokens "
            "expire (API_TOKEN_TTL) and are stored hashed."
        )
        return scheme
