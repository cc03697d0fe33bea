"""Issuing, rotating and revoking API tokens; every change is audited.

A token is shown once, when it is issued (``IssuedToken.token``); the database keeps its
digest (see ``apitokens.models``). Tokens live ``settings.API_TOKEN_TTL`` (``None``:
never expire) unless the caller gives another lifetime (the ``create_api_token``
command, for service accounts). A rotation never extends a token's life: the new token
expires no later than the one that asked for it (``not_after``). Audit events name the
token by its prefix, never by its value.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from apitokens.models import ApiToken
from audit import services as audit


class _Default:
    pass


DEFAULT_TTL: Any = _Default()


@dataclass(frozen=True)
class IssuedToken:
    token: str  # the only copy: hand it to the user, never log or store it
    row: ApiToken


def _about(row: ApiToken, **details: Any) -> dict[str, Any]:
    """``audit.record`` arguments naming the token by its prefix."""
    return {
        "obj": row,
        "object_id": row.prefix,
        "object_repr": str(row),
        "details": {"user": row.user.get_username(), "prefix": row.prefix, **details},
    }


def _expiry(lifetime: timedelta | None, not_after: datetime | None) -> datetime | None:
    """The earlier of "now + lifetime" and ``not_after`` (``None`` on either side: no limit
    from that side)."""
    ends = [] if not_after is None else [not_after]
    if lifetime is not None:
        ends.append(timezone.now() + lifetime)
    return min(ends, default=None)


def issue_token(
    user: Any,
    *,
    ttl: timedelta | _Default | None = DEFAULT_TTL,
    not_after: datetime | None = None,
    via: str = "api",
) -> IssuedToken:
    """A new token for ``user``, alongside any it already has; it expires after ``ttl``
    but never later than ``not_after`` (when given)."""
    lifetime = settings.API_TOKEN_TTL if isinstance(ttl, _Default) else ttl
    if lifetime is not None and lifetime <= timedelta(0):
        raise ValueError("A token's lifetime must be positive (or None: never expires).")
    expiry = _expiry(lifetime, not_after)
    with transaction.atomic():
        row, token = ApiToken.objects.create(user=user, expiry=None)
        if expiry is not None:  # knox's manager only takes a lifetime, not a date
            ApiToken.objects.filter(pk=row.pk).update(expiry=expiry)
        row = ApiToken.objects.select_related("user").get(pk=row.pk)
        audit.record(
            "apitokens.token.created", **_about(row, expires=row.expiry or "never", via=via)
        )
    return IssuedToken(token=token, row=row)


def revoke(rows: Any, *, reason: str) -> int:
    """Delete these tokens (a queryset or an iterable of rows), one audit event each."""
    revoked = 0
    with transaction.atomic():
        for row in (
            ApiToken.objects.select_related("user")
            .select_for_update(of=("self",))
            .filter(pk__in=[getattr(r, "pk", r) for r in rows])
            .order_by("created")
        ):
            audit.record(
                "apitokens.token.revoked", **_about(row, reason=reason, expired=row.expired)
            )
            row.delete()
            revoked += 1
    return revoked


def revoke_user_tokens(user: Any, *, reason: str) -> int:
    """Revoke every token of ``user``; how many there were."""
    return revoke(ApiToken.objects.filter(user=user).values_list("pk", flat=True), reason=reason)


def rotate_token(user: Any, *, caller: ApiToken | None = None) -> IssuedToken:
    """A new token for ``user``; every token it had stops working.

    ``caller``: the token the request was authenticated with (``None``: a signed-in
    session, i.e. someone who knew the password). The new token expires no later than
    ``caller`` does, so a leaked token cannot keep renewing itself; a caller that never
    expires puts no limit of its own, and API_TOKEN_TTL still applies.
    """
    not_after = caller.expiry if caller is not None else None
    with transaction.atomic():
        # Two rotations at once would each keep their new token: the user's row lock
        # makes the second wait and revoke the first one's.
        get_user_model()._default_manager.select_for_update().filter(pk=user.pk).first()
        revoke_user_tokens(user, reason="rotated")
        return issue_token(user, not_after=not_after, via="api")
