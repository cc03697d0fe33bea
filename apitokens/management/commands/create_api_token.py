"""Issue an API token for a user (a service account, e.g. the one KMS_HTTP_TOKEN names)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apitokens import services
from audit import context


def _ttl(value: str) -> timedelta | None:
    text = value.strip().lower()
    if text == "never":
        return None
    if text.isdigit() and 0 < int(text) <= 36500:
        return timedelta(days=int(text))
    raise CommandError(f"--ttl must be a number of days (1 to 36500) or 'never', not {value!r}.")


class Command(BaseCommand):
    help = (
        "Print a new API token for USERNAME on stdout (shown once; Signet keeps only its "
        "hash). The user's other tokens keep working. Audited."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--ttl",
            default=None,
            metavar="DAYS|never",
            help="How long the token lives (default: API_TOKEN_TTL).",
        )

    def handle(self, *args: Any, username: str, ttl: str | None, **options: Any) -> None:
        user = (
            get_user_model()
            ._default_manager.filter(**{get_user_model().USERNAME_FIELD: username})
            .first()
        )
        if user is None:
            raise CommandError(f"No user named {username!r}.")
        if not user.is_active:
            raise CommandError(f"User {username!r} is inactive: its tokens would not work.")
        lifetime = settings.API_TOKEN_TTL if ttl is None else _ttl(ttl)
        with context.command_actor("manage.py create_api_token"):
            issued = services.issue_token(user, ttl=lifetime, via="command")
        self.stdout.write(issued.token)
        expires = issued.row.expiry.isoformat() if issued.row.expiry else "never"
        self.stderr.write(f"Token {issued.row.prefix}… for {username}, expires: {expires}.")
