"""Verify that every image Signet signed is held by the registry, as Signet now checks
before signing (run once after upgrading from a version that trusted push events)::

    manage.py recheck_signatures --instance I [--namespace NS] [--remove]

Exit status 1 when a signed image is not held by the registry and ``--remove`` was not
given, or when the registry could not answer for some image.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.context import command_actor
from config.errors import DomainError
from registry.models import Namespace
from signing.management.arguments import instance_argument
from signing.recheck import recheck_signatures

SHOWN = 20


class Command(BaseCommand):
    help = (
        "Fetch every signed image by digest from the registry and report (or, with --remove, "
        "revoke) signatures of images the registry does not hold."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--instance", required=True, help="Instance name or id.")
        parser.add_argument("--namespace", help="Only this namespace.")
        parser.add_argument(
            "--remove",
            action="store_true",
            help="Fail those rows and remove their layers from the .sig artifacts (audited).",
        )

    @command_actor("manage.py recheck_signatures")
    def handle(self, *args: Any, **options: Any) -> None:
        instance = instance_argument(options["instance"])
        namespace = options["namespace"]
        if namespace and not Namespace.objects.filter(instance=instance, name=namespace).exists():
            raise CommandError(f"Instance {instance.name} has no namespace {namespace!r}.")
        try:
            result = recheck_signatures(
                instance=instance,
                namespace=namespace,
                remove=options["remove"],
                progress=self.stdout.write,
            )
        except DomainError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(
            f"Checked {result.checked} signed image(s): {result.held} held by the registry, "
            f"{len(result.not_held)} not held, {result.removed} revoked, "
            f"{len(result.unverified)} held but not verifiable (reported only), "
            f"{len(result.errors)} could not be checked."
        )
        for line in result.unverified[:SHOWN]:
            self.stderr.write(f"not verifiable: {line}")
        for line in result.not_held[:SHOWN]:
            self.stderr.write(f"not held: {line}")
        for line in result.errors[:SHOWN]:
            self.stderr.write(f"error: {line}")
        if result.not_held:
            self.stderr.write(
                "A signature copied elsewhere stays valid for whoever trusts the key: point the "
                "policy at a new key and re-sign to end trust in it."
            )
        if result.errors:
            raise CommandError(f"{len(result.errors)} image(s) could not be checked; run again.")
        if result.not_held and not options["remove"]:
            raise CommandError(
                f"{len(result.not_held)} signed image(s) are not held by the registry; "
                "run with --remove to revoke them."
            )
