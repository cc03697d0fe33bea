"""Destroy KMS keys whose scheduled deletion date has passed."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser

from audit.context import command_actor
from kms.services.purge import purge_deleted_keys


class Command(BaseCommand):
    help = (
        "Destroy every key in PendingDelete whose deletion date has passed (run it daily, "
        "e.g. from cron). With --dry-run, only list the keys that would be destroyed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="List the keys that are due without destroying them.",
        )

    @command_actor("manage.py purge_deleted_keys")
    def handle(self, *args, dry_run: bool, **options) -> None:
        skipped: list = []
        keys = purge_deleted_keys(dry_run=dry_run, skipped=skipped)
        for error in skipped:
            self.stderr.write(self.style.WARNING(f"Skipped: {error.message}"))
        verb = "Would destroy" if dry_run else "Destroyed"
        for key in keys:
            self.stdout.write(
                f"{verb} key {key.alias} ({key.key_id}), deletion date "
                f"{key.deletion_date:%Y-%m-%d %H:%M}"
            )
        noun = "key" if len(keys) == 1 else "keys"
        if dry_run:
            self.stdout.write(f"Dry run: {len(keys)} {noun} would be destroyed; nothing changed.")
        else:
            self.stdout.write(self.style.SUCCESS(f"Destroyed {len(keys)} {noun}."))
