"""``manage.py sync_registry <instance> [--namespace NS] [--dry-run]``.

Imports repositories, tags and manifests that exist in the registry but not in Signet
(images pushed before Signet was attached, or whose events were lost). Safe to run
again; see ``registry.services.sync.sync_instance``.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from audit.context import command_actor
from config.errors import DomainError
from registry.errors import InstanceNotFound, RegistryError
from registry.selectors import get_instance
from registry.services.sync import sync_instance


class Command(BaseCommand):
    help = "Import repositories, tags and manifests from a registry instance into Signet."

    def add_arguments(self, parser) -> None:
        parser.add_argument("instance", help="The instance name.")
        parser.add_argument("--namespace", help="Only repositories of this namespace.")
        parser.add_argument(
            "--page-size", type=int, default=100, help="Catalog and tag page size (default 100)."
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Report what would be imported; write nothing."
        )

    @command_actor("manage.py sync_registry")
    def handle(
        self, *args, instance: str, namespace: str | None, page_size: int, dry_run: bool, **options
    ) -> None:
        try:
            target = get_instance(name=instance)
        except InstanceNotFound as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(
            f"Syncing instance {target.name} from {target.backend_url}"
            + (f" (namespace {namespace})" if namespace else "")
            + (" [dry run]" if dry_run else "")
        )
        try:
            result = sync_instance(
                instance=target,
                namespace=namespace,
                page_size=page_size,
                dry_run=dry_run,
                progress=self.stdout.write,
            )
        except RegistryError as exc:
            raise CommandError(
                f"Registry of instance {target.name} ({target.backend_url}) failed: {exc.message}"
            ) from None
        except DomainError as exc:
            raise CommandError(exc.message) from None
        for error in result.errors:
            self.stderr.write(f"error: {error}")
        summary = (
            f"Repositories: {result.repositories} seen, {result.repositories_created} created, "
            f"{result.repositories_skipped} skipped. "
            f"Tags: {result.tags_created} created, {result.tags_updated} updated, "
            f"{result.tags_unchanged} unchanged, {result.tags_ignored} signature tags ignored. "
            f"Manifests created: {result.manifests_created}. Errors: {len(result.errors)}."
        )
        if dry_run:
            summary = "Dry run, nothing written. " + summary
        style = self.style.WARNING if result.errors else self.style.SUCCESS
        self.stdout.write(style(summary))
