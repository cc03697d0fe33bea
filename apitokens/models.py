"""The admin's and the audit log's face of django-rest-knox's ``AuthToken``.

A knox row holds the SHA-512 digest of the token (its primary key), the token's first
15 characters (``token_key``, the lookup index), the user, when it was created and when
it expires (``NULL``: never). The token itself is nowhere: a database dump does not let
anyone authenticate.
"""

from __future__ import annotations

from django.utils import timezone
from knox.models import AuthToken

# How much of the token the admin and the audit log show: enough to tell a user's tokens
# apart, far too little to guess the rest (a knox token is 64 hex characters).
PREFIX_LENGTH = 8


class ApiToken(AuthToken):
    class Meta:
        proxy = True
        verbose_name = "API token"
        verbose_name_plural = "API tokens"

    @property
    def prefix(self) -> str:
        return self.token_key[:PREFIX_LENGTH]

    @property
    def expired(self) -> bool:
        return self.expiry is not None and self.expiry <= timezone.now()

    def __str__(self) -> str:
        # knox's own text starts with the digest; ours names only the prefix.
        return f"{self.prefix}… of {self.user.get_username()}"
