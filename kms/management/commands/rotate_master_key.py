"""Re-seal every KMS key under the current (first) master key of KMS_MASTER_KEY."""

from __future__ import annotations

import argparse

from django.core.management.base import (
    BaseCommand,
    CommandError,
    CommandParser,
    DjangoHelpFormatter,
)

from audit.context import command_actor
from config.errors import DomainError
from kms.errors import MasterKeyError
from kms.services.rotation import rotate_master_key


class _HelpFormatter(DjangoHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Keeps the numbered procedure in the help text on separate lines."""


class Command(BaseCommand):
    help = """Re-seal every KMS key still sealed under an older master-key version.

Zero-downtime master key rotation:
  1. Generate a new key:    manage.py generate_master_key --version NEW_VERSION
  2. Set KMS_MASTER_KEY="NEW_VERSION:NEW,OLD_VERSION:OLD" everywhere and restart the
     processes one by one. Both versions open key material; the first one seals, so
     keys created meanwhile are already sealed under the new version.
  3. Run this command. Each key is re-sealed in its own short transaction, so signing
     goes on meanwhile; it is safe to interrupt and run again.
  4. When it reports every key current, drop the old entry from KMS_MASTER_KEY
     everywhere and restart again.
"""

    def create_parser(self, prog_name: str, subcommand: str, **kwargs) -> CommandParser:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        return super().create_parser(prog_name, subcommand, **kwargs)

    @command_actor("manage.py rotate_master_key")
    def handle(self, *args, **options) -> None:
        try:
            result = rotate_master_key()
        except MasterKeyError as exc:
            key_id = exc.details.get("key_id")
            if key_id is None:
                raise CommandError(exc.message) from None
            raise CommandError(
                f"Cannot re-seal key {key_id}: {exc.message}. KMS_MASTER_KEY must hold the "
                "version this key is sealed under as well as the new one. Keys re-sealed "
                "before it stay re-sealed; fix the setting and run the command again."
            ) from None
        except DomainError as exc:  # a rotation hook (registry credentials) refused
            raise CommandError(
                f"{exc.message} The KMS keys were re-sealed; fix this and run the command again."
            ) from None
        noun = "key" if result.resealed == 1 else "keys"
        self.stdout.write(
            self.style.SUCCESS(
                f"Re-sealed {result.resealed} {noun} under master key version "
                f"{result.target_version} ({result.already_current} were already current)"
            )
        )
        for hook, count in (result.others or {}).items():
            self.stdout.write(f"{hook}: re-sealed {count}")
