"""Sign the existing images of namespaces that have a signing policy.

    manage.py backfill_signatures --instance I [--namespace NS] [--repository R]
                                  [--dry-run] [--batch-size N]

Covers every tagged manifest in scope and the children of tagged image indexes. Images
already signed with their policy's current key are counted, not signed again, so a
second run does only what is left. Manifest ids are streamed from the database
(``.iterator()``) and signed in batches through ``signing.services.request_signing``,
all synchronously, so memory stays flat over any number of tags. Exit status 1 when
any image failed to sign (``retry_signatures`` or another run picks them up).
"""

from __future__ import annotations

import itertools
import time
from argparse import ArgumentTypeError
from collections.abc import Iterator
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Q, QuerySet

from audit.context import command_actor
from config.errors import DomainError
from config.ids import is_id
from registry.models import Instance, Manifest, Namespace
from signing import services
from signing.models import Signature, SigningPolicy, Trigger

DEFAULT_BATCH_SIZE = 200
SHOWN_FAILURES = 20


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise ArgumentTypeError(f"must be a positive integer, not {value!r}")
    return number


def _batches(ids: Iterator[int], size: int) -> Iterator[list[int]]:
    while batch := list(itertools.islice(ids, size)):
        yield batch


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

    # -- scope ---------------------------------------------------------------------------------

    def _instance(self, ref: str) -> Instance:
        instance = (
            Instance.objects.filter(pk=int(ref)).first()
            if is_id(ref)
            else Instance.objects.filter(name=ref).first()
        )
        if instance is None:
            names = ", ".join(Instance.objects.order_by("name").values_list("name", flat=True)[:20])
            raise CommandError(
                f"No registry instance {ref!r}. Known instances: {names or '(none)'}."
            )
        return instance

    def _check_scope(self, instance: Instance, namespace: str | None, repository: str | None):
        if namespace is not None and not Namespace.objects.filter(
            instance=instance, name=namespace
        ).exists():
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
        instance = self._instance(options["instance"])
        namespace: str | None = options["namespace"]
        repository: str | None = options["repository"]
        batch_size: int = options["batch_size"]
        self._check_scope(instance, namespace, repository)

        tags = services.tags_in_scope(
            instance=instance, namespace=namespace, repository=repository
        ).order_by()
        tagged = Manifest.objects.filter(pk__in=tags.values("manifest_id"))
        covered = Manifest.objects.filter(
            Q(pk__in=tagged.values("pk"))
            | Q(parent_references__parent__in=tagged.filter(child_references__isnull=False))
        )
        policy_namespaces = SigningPolicy.objects.filter(namespace__instance=instance).values(
            "namespace_id"
        )
        in_policy = covered.filter(repository__namespace_id__in=policy_namespaces)
        total = in_policy.values("pk").distinct().count()
        skipped = covered.exclude(repository__namespace_id__in=policy_namespaces)
        skipped_count = skipped.values("pk").distinct().count()
        skipped_namespaces = sorted(
            set(skipped.values_list("repository__namespace__name", flat=True).distinct())
        )
        scope = f"instance {instance.name}" + (f", namespace {namespace}" if namespace else "") + (
            f", repository {repository}" if repository else ""
        )
        self.stdout.write(
            f"Backfill {scope}: {total} image(s) covered by a signing policy, "
            f"{skipped_count} skipped (no policy"
            + (f": {', '.join(skipped_namespaces)}" if skipped_namespaces else "")
            + ")."
        )
        if options["dry_run"]:
            self._dry_run(in_policy, total, skipped_count)
            return

        # Children of indexes are signed with their index, so they are not streamed twice.
        children = Manifest.objects.filter(
            parent_references__parent__in=tagged.filter(child_references__isnull=False)
        )
        stream = (
            tagged.filter(repository__namespace_id__in=policy_namespaces)
            .exclude(pk__in=children.values("pk"))
            .order_by("pk")
            .values_list("pk", flat=True)
            .iterator(chunk_size=batch_size)
        )
        totals = {"signed": 0, "already_signed": 0, "failed": 0, "busy": 0, "done": 0}
        failures: list[str] = []
        started = time.monotonic()
        for number, ids in enumerate(_batches(stream, batch_size), start=1):
            self._sign_batch(ids, totals, failures)
            elapsed = max(time.monotonic() - started, 1e-9)
            self.stdout.write(
                f"batch {number}: {totals['done']}/{total} images "
                f"({totals['signed']} signed, {totals['already_signed']} already signed, "
                f"{totals['failed']} failed) {totals['signed'] / elapsed:.1f} signed/s"
            )
        elapsed = time.monotonic() - started
        self.stdout.write(
            f"Done in {elapsed:.1f}s: {totals['signed']} signed, "
            f"{totals['already_signed']} already signed, {totals['failed']} failed, "
            f"{skipped_count} skipped (no policy)"
            + (f", {totals['busy']} being signed by another worker" if totals["busy"] else "")
            + "."
        )
        if totals["failed"]:
            for line in failures[:SHOWN_FAILURES]:
                self.stderr.write(f"failed: {line}")
            if len(failures) > SHOWN_FAILURES:
                self.stderr.write(f"... and {len(failures) - SHOWN_FAILURES} more.")
            raise CommandError(
                f"{totals['failed']} image(s) failed to sign; they are retried by "
                "`manage.py retry_signatures`, or run this command again."
            )

    def _sign_batch(self, ids: list[int], totals: dict[str, int], failures: list[str]) -> None:
        manifests = list(Manifest.objects.filter(pk__in=ids).select_related("repository"))
        batch = services.manifests_with_children(manifests)
        try:
            result = services.request_signing(
                manifests=batch,
                trigger=Trigger.BACKFILL,
                actor=None,
                synchronous_limit=len(batch),
            )
        except DomainError as exc:
            raise CommandError(f"Signing stopped: {exc.message}") from exc
        totals["signed"] += result.outcome.signed
        totals["failed"] += result.outcome.failed
        totals["busy"] += result.outcome.skipped
        totals["already_signed"] += result.already_signed
        totals["done"] += result.requested - result.no_policy
        failures.extend(result.outcome.failures)

    def _dry_run(self, in_policy: QuerySet[Manifest], total: int, skipped: int) -> None:
        # Signed, with the policy's current key and for its current domain: what
        # request_signing leaves alone (the rest would be signed or re-signed).
        already = (
            Signature.objects.filter(manifest__in=in_policy.values("pk"))
            .exclude(services.needs_signing())
            .values("manifest_id")
            .distinct()
            .count()
        )
        self.stdout.write(
            f"Dry run: {total - already} would be signed, {already} already signed, "
            f"{skipped} skipped (no policy). Nothing was changed."
        )
