"""Sign the existing images of namespaces that have a signing policy.

    manage.py backfill_signatures --instance I [--namespace NS] [--repository R]
                                  [--dry-run] [--batch-size N]

Covers every tagged manifest in scope and the children of tagged image indexes. Images
already signed with their policy's current key are counted, not signed again, so a
second run does only what is left. The work is ``signing.backfill``: manifests paged by
primary key, each page read and signed in short transactions (memory stays flat, and
nothing holds the database while it signs), so other backfills, the webhook and the
retry job may run meanwhile. Exit status 0 when everything in scope ends signed, by this
run or another worker; 1 when any image is left unsigned (``retry_signatures`` or
another run picks them up).
"""

from __future__ import annotations

import time
from argparse import ArgumentTypeError
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.context import command_actor
from config.errors import DomainError
from registry.models import Instance, Namespace
from signing import backfill, services
from signing.management.arguments import instance_argument

DEFAULT_BATCH_SIZE = backfill.DEFAULT_BATCH_SIZE
SHOWN_FAILURES = 20


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise ArgumentTypeError(f"must be a positive integer, not {value!r}")
    return number


def _seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0 <= number <= 3600:
        raise ArgumentTypeError(f"must be a number of seconds from 0 to 3600, not {value!r}")
    return number


class Command(BaseCommand):
    help = (
        "Sign every existing image (tagged manifests and index children) that a namespace "
        "signing policy covers and its current key has not signed. Resumable; exit status 1 "
        "when anything failed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--instance", required=True, help="Instance name or id.")
        parser.add_argument("--namespace", help="Only this namespace.")
        parser.add_argument(
            "--repository",
            help="Only this repository: its full path (ns/app), or its name inside --namespace.",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be signed; change nothing."
        )
        parser.add_argument(
            "--batch-size",
            type=_positive,
            default=DEFAULT_BATCH_SIZE,
            help=f"Images signed per batch (default {DEFAULT_BATCH_SIZE}).",
        )
        parser.add_argument(
            "--wait",
            type=_seconds,
            default=backfill.DEFAULT_WAIT_SECONDS,
            help="At the end, seconds to wait for images another worker is still signing "
            f"(default {backfill.DEFAULT_WAIT_SECONDS:.0f}).",
        )

    # -- scope ---------------------------------------------------------------------------------

    def _check_scope(self, instance: Instance, namespace: str | None, repository: str | None):
        if (
            namespace is not None
            and not Namespace.objects.filter(instance=instance, name=namespace).exists()
        ):
            raise CommandError(f"Instance {instance.name} has no namespace {namespace!r}.")
        if repository is not None:
            if namespace is None and "/" not in repository:
                raise CommandError(
                    f"--repository {repository!r} needs --namespace, or give its full path "
                    "(namespace/name)."
                )
            # Inside --namespace a repository may be named with or without the namespace
            # ("app", "sub/app" or "team/app"), as in signing.services.tags_in_scope.
            full = (
                repository
                if namespace is None or repository.startswith(f"{namespace}/")
                else f"{namespace}/{repository}"
            )
            if not services.tags_in_scope(instance=instance, repository=full).exists():
                raise CommandError(
                    f"Instance {instance.name} has no tagged image in repository {full!r}."
                )

    # -- run -----------------------------------------------------------------------------------

    @command_actor("manage.py backfill_signatures")
    def handle(self, *args: Any, **options: Any) -> None:
        instance = instance_argument(options["instance"])
        namespace: str | None = options["namespace"]
        repository: str | None = options["repository"]
        self._check_scope(instance, namespace, repository)

        scope = backfill.plan(instance=instance, namespace=namespace, repository=repository)
        described = (
            f"instance {instance.name}"
            + (f", namespace {namespace}" if namespace else "")
            + (f", repository {repository}" if repository else "")
        )
        self.stdout.write(
            f"Backfill {described}: {scope.total} image(s) covered by a signing policy, "
            f"{scope.skipped} skipped (no policy"
            + (f": {', '.join(scope.skipped_namespaces)}" if scope.skipped_namespaces else "")
            + ")."
        )
        if options["dry_run"]:
            already = backfill.already_signed(scope)
            self.stdout.write(
                f"Dry run: {scope.total - already} would be signed, {already} already signed, "
                f"{scope.skipped} skipped (no policy). Nothing was changed."
            )
            return

        started = time.monotonic()
        try:
            result = backfill.backfill(
                scope,
                batch_size=options["batch_size"],
                wait_seconds=options["wait"],
                progress=self.stdout.write,
            )
        except DomainError as exc:
            raise CommandError(f"Signing stopped: {exc.message}") from exc
        elapsed = time.monotonic() - started
        self.stdout.write(
            f"Done in {elapsed:.1f}s: {result.signed} signed, "
            f"{result.already_signed} already signed, {result.failed} failed, "
            f"{scope.skipped} skipped (no policy)"
            + (f", {result.busy} taken by another worker" if result.busy else "")
            + (
                f", {result.still_held} still being signed by another worker"
                if result.still_held
                else ""
            )
            + "."
        )
        if result.failed:
            for line in result.failures[:SHOWN_FAILURES]:
                self.stderr.write(f"failed: {line}")
            if result.failed > SHOWN_FAILURES:
                self.stderr.write(f"... and {result.failed - SHOWN_FAILURES} more.")
            raise CommandError(
                f"{result.failed} image(s) failed to sign; they are retried by "
                "`manage.py retry_signatures`, or run this command again."
            )
