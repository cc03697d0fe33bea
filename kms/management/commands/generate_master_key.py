"""Print a new master-key keyring entry for KMS_MASTER_KEY."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from kms import crypto


class Command(BaseCommand):
    help = (
        "Print a new KMS master-key entry 'VERSION:BASE64' on stdout (and how to roll it out "
        "on stderr). The entry is a secret: store it in your secret store, not in a file "
        "under version control."
    )

    def create_parser(self, prog_name: str, subcommand: str, **kwargs) -> CommandParser:
        # Our --version (of the key) replaces Django's --version (of Django).
        kwargs.setdefault("conflict_handler", "resolve")
        return super().create_parser(prog_name, subcommand, **kwargs)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--version",
            dest="key_version",
            metavar="N",
            type=int,
            default=None,
            help=(
                "Version number of the new entry (default: one more than the highest version "
                "in the current KMS_MASTER_KEY, or 1 when it is empty)."
            ),
        )

    def handle(self, *args, key_version: int | None, **options) -> None:
        current = self._current_keyring()
        if key_version is None:
            key_version = max(current.keys) + 1 if current else 1
        if key_version < 1:
            raise CommandError(f"--version must be a positive whole number, not {key_version}.")
        if current and key_version in current.keys:
            raise CommandError(
                f"Version {key_version} is already in KMS_MASTER_KEY; choose a new version "
                f"(for example --version {max(current.keys) + 1})."
            )

        self.stdout.write(crypto.generate_master_key_text(key_version))
        if current is None:
            self.stderr.write(
                f"Set KMS_MASTER_KEY to the line above (version {key_version}). Keep it secret "
                "and backed up: keys sealed under it cannot be opened without it."
            )
            return
        versions = ", ".join(str(version) for version in current.keys)
        self.stderr.write(
            f"To rotate without downtime (KMS_MASTER_KEY now holds version(s) {versions}):\n"
            '  1. Set KMS_MASTER_KEY="<line above>,<current value>" everywhere (the new entry '
            "first: it seals; every entry opens) and restart the processes one by one.\n"
            "  2. Run `manage.py rotate_master_key` to re-seal every key under version "
            f"{key_version}.\n"
            "  3. When it reports every key current, drop the old entries from KMS_MASTER_KEY "
            "and restart again."
        )

    def _current_keyring(self) -> crypto.MasterKeyring | None:
        if not settings.KMS_MASTER_KEY:
            return None
        try:
            return crypto.MasterKeyring.parse(settings.KMS_MASTER_KEY)
        except crypto.MasterKeyringError:
            return None  # a fresh entry is exactly what fixes a broken setting
