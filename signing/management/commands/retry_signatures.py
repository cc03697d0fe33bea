"""Retry failed signatures whose backoff has elapsed, stale pending ones (a dead worker's at
once), and queued artifact removals. Safe to run from cron (e.g. every minute)::

    manage.py retry_signatures [--limit N] [--fail-on-error]

Exit status 0 even when some still fail (they wait for their next attempt), unless
``--fail-on-error`` is given.
"""

from __future__ import annotations

from argparse import ArgumentTypeError
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.context import command_actor
from signing.models import ArtifactCleanup, Signature, SignatureStatus
from signing.services.requests import retry_signatures
from signing.services.workers import worker_running

SHOWN_FAILURES = 20


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise ArgumentTypeError(f"must be a positive integer, not {value!r}")
    return number


class Command(BaseCommand):
    help = (
        "Retry failed and unfinished image signatures (after their backoff) and pending "
        "signature artifact removals. Suitable for cron."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--limit", type=_positive, default=None, help="At most N signatures this run."
        )
        parser.add_argument(
            "--fail-on-error",
            action="store_true",
            help="Exit with status 1 when a retried signature failed again.",
        )

    @command_actor("manage.py retry_signatures")
    def handle(self, *args: Any, **options: Any) -> None:
        with worker_running("retry"):
            outcome = retry_signatures(limit=options["limit"])
        still_failed = Signature.objects.filter(status=SignatureStatus.FAILED).count()
        cleanups = ArtifactCleanup.objects.count()
        self.stdout.write(
            f"Retried {outcome.signed + outcome.failed + outcome.skipped} signature(s): "
            f"{outcome.signed} signed, {outcome.failed} failed, {outcome.skipped} skipped "
            f"(signed meanwhile or taken by another worker). {still_failed} failed signature(s) "
            f"wait for their next attempt; {cleanups} artifact removal(s) pending."
        )
        for line in outcome.failures[:SHOWN_FAILURES]:
            self.stderr.write(f"failed: {line}")
        if len(outcome.failures) > SHOWN_FAILURES:
            self.stderr.write(f"... and {len(outcome.failures) - SHOWN_FAILURES} more.")
        if options["fail_on_error"] and outcome.failed:
            raise CommandError(f"{outcome.failed} signature(s) failed again.")
