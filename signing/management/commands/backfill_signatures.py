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
from signing import backfill
from signing.management.arguments import instance_argument
from signing.services.workers import worker_running

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

    @command_actor("manage.py backfill_signatures")
    def handle(self, *args: Any, **options: Any) -> None:
        instance = instance_argument(options["instance"])
        namespace: str | None = options["namespace"]
        repository: str | None = options["repository"]
        if problem := backfill.scope_problem(
            instance=instance, namespace=namespace, repository=repository
        ):
            raise CommandError(problem)
        scope = backfill.plan(instance=instance, namespace=namespace, repository=repository)
        self._report_plan(scope, namespace, repository)
        if options["dry_run"]:
            already = backfill.already_signed(scope)
            self.stdout.write(
                f"Dry run: {scope.total - already} would be signed, {already} already signed, "
                f"{scope.skipped} skipped (no policy). Nothing was changed."
            )
            return
        started = time.monotonic()
        try:
            with worker_running("backfill"):
                result = backfill.backfill(
                    scope,
                    batch_size=options["batch_size"],
                    wait_seconds=options["wait"],
                    progress=self.stdout.write,
                )
        except DomainError as exc:
            raise CommandError(f"Signing stopped: {exc.message}") from exc
        self._report_result(scope, result, time.monotonic() - started)

    def _report_plan(
        self, scope: backfill.Plan, namespace: str | None, repository: str | None
    ) -> None:
        described = (
            f"instance {scope.instance.name}"
            + (f", namespace {namespace}" if namespace else "")
            + (f", repository {repository}" if repository else "")
        )
        self.stdout.write(
            f"Backfill {described}: {scope.total} image(s) covered by a signing policy, "
            f"{scope.skipped} skipped (no policy"
            + (f": {', '.join(scope.skipped_namespaces)}" if scope.skipped_namespaces else "")
            + ")."
        )

    def _report_result(
        self, scope: backfill.Plan, result: backfill.BackfillResult, elapsed: float
    ) -> None:
        """The summary line; failures to stderr and exit status 1."""
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
