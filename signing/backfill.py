"""Backfill: sign the existing images a namespace signing policy covers.

``manage.py backfill_signatures`` is a thin caller of ``scope_problem``, ``plan`` and ``backfill``
here.

The manifests are paged by primary key (``pk > last ORDER BY pk LIMIT batch``): each page
is read in one short statement and signed before the next is read, so no read transaction
stays open while the backfill writes. On SQLite that is what lets it share the database
with the webhook and other commands: a connection that still holds a read snapshot cannot
take the write lock once another connection has committed ("database is locked" at once,
whatever the busy timeout), while a connection holding nothing just queues for it.

The verdict comes from the database at the end, not from this run's own attempts: an
image another worker (a second backfill, the push hook, ``retry_signatures``) signed
meanwhile counts as signed. Rows another live worker still holds are waited for, for a
bounded time (at most their claim), never forever; a dead worker's rows are taken over.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from django.db.models import Q, QuerySet
from django.utils import timezone

from registry.models import Instance, Manifest, Namespace
from signing import selectors
from signing.models import Signature, SignatureStatus, SigningPolicy, Trigger
from signing.services.requests import request_signing
from signing.services.worker import sign_signatures
from signing.services.workers import release_dead_workers

DEFAULT_BATCH_SIZE = 200
# How long the end of a run waits for images another live worker is signing.
DEFAULT_WAIT_SECONDS = 60.0
POLL_SECONDS = 0.2


@dataclass
class Plan:
    """What a backfill of one scope covers."""

    instance: Instance
    total: int
    skipped: int
    skipped_namespaces: list[str]
    # Every manifest in scope whose namespace has a policy (index children included).
    in_policy: QuerySet[Manifest]
    # What is paged through: tagged manifests, not the children of indexes (those are
    # signed with their index).
    roots: QuerySet[Manifest]


@dataclass
class BackfillResult:
    signed: int = 0
    already_signed: int = 0
    # Rows another worker held when this run reached them.
    busy: int = 0
    done: int = 0
    # This run's attempts that failed (some may be signed by another worker by the end).
    attempts_failed: int = 0
    # At the end, from the database: in scope, not signed with the policy's current key.
    failed: int = 0
    still_held: int = 0
    failures: list[str] = field(default_factory=list)


def scope_problem(
    *, instance: Instance, namespace: str | None = None, repository: str | None = None
) -> str | None:
    """Why the scope names nothing to backfill (a namespace or repository not there), or
    None when it is fine."""
    if (
        namespace is not None
        and not Namespace.objects.filter(instance=instance, name=namespace).exists()
    ):
        return f"Instance {instance.name} has no namespace {namespace!r}."
    if repository is None:
        return None
    if namespace is None and "/" not in repository:
        return (
            f"--repository {repository!r} needs --namespace, or give its full path "
            "(namespace/name)."
        )
    # Inside --namespace a repository may be named with or without the namespace
    # ("app", "sub/app" or "team/app"), as in signing.selectors.tags_in_scope.
    full = (
        repository
        if namespace is None or repository.startswith(f"{namespace}/")
        else f"{namespace}/{repository}"
    )
    if not selectors.tags_in_scope(instance=instance, repository=full).exists():
        return f"Instance {instance.name} has no tagged image in repository {full!r}."
    return None


def plan(
    *, instance: Instance, namespace: str | None = None, repository: str | None = None
) -> Plan:
    tags = selectors.tags_in_scope(
        instance=instance, namespace=namespace, repository=repository
    ).order_by()
    tagged = Manifest.objects.filter(pk__in=tags.values("manifest_id"))
    indexes = tagged.filter(child_references__isnull=False)
    covered = Manifest.objects.filter(
        Q(pk__in=tagged.values("pk")) | Q(parent_references__parent__in=indexes)
    )
    policy_namespaces = SigningPolicy.objects.filter(namespace__instance=instance).values(
        "namespace_id"
    )
    in_policy = covered.filter(repository__namespace_id__in=policy_namespaces)
    skipped = covered.exclude(repository__namespace_id__in=policy_namespaces)
    children = Manifest.objects.filter(parent_references__parent__in=indexes)
    return Plan(
        instance=instance,
        total=in_policy.values("pk").distinct().count(),
        skipped=skipped.values("pk").distinct().count(),
        skipped_namespaces=sorted(
            set(skipped.values_list("repository__namespace__name", flat=True).distinct())
        ),
        in_policy=in_policy,
        roots=tagged.filter(repository__namespace_id__in=policy_namespaces).exclude(
            pk__in=children.values("pk")
        ),
    )


def already_signed(scope: Plan) -> int:
    """Images in scope signed with their policy's current key and for its current domain
    (what ``request_signing`` leaves alone)."""
    return (
        Signature.objects.filter(manifest__in=scope.in_policy.values("pk"))
        .exclude(selectors.needs_signing())
        .values("manifest_id")
        .distinct()
        .count()
    )


def pages(queryset: QuerySet[Manifest], size: int) -> Iterator[list[int]]:
    """Primary keys of ``queryset``, ``size`` at a time, each page one complete read."""
    last = 0
    while True:
        ids = list(queryset.filter(pk__gt=last).order_by("pk").values_list("pk", flat=True)[:size])
        if not ids:
            return
        yield ids
        last = ids[-1]


def _sign_page(ids: list[int], result: BackfillResult) -> None:
    manifests = list(Manifest.objects.filter(pk__in=ids).select_related("repository"))
    batch = selectors.manifests_with_children(manifests)
    outcome = request_signing(
        manifests=batch, trigger=Trigger.BACKFILL, actor=None, synchronous_limit=len(batch)
    )
    result.signed += outcome.outcome.signed
    result.busy += outcome.outcome.skipped
    result.attempts_failed += outcome.outcome.failed
    result.already_signed += outcome.already_signed
    result.done += outcome.requested - outcome.no_policy


def _unsettled(scope: Plan) -> QuerySet[Signature]:
    return Signature.objects.filter(manifest__in=scope.in_policy.values("pk")).filter(
        selectors.needs_signing()
    )


def _held(scope: Plan) -> QuerySet[Signature]:
    """Rows a live worker is signing (a dead worker's are released first)."""
    release_dead_workers()
    return _unsettled(scope).filter(claimed_until__gt=timezone.now())


def _abandoned(scope: Plan) -> list[int]:
    """Pending rows nobody holds any more (a worker stopped, or its claim lapsed): this run
    signs them itself. Failed rows stay failed: they were tried in this run."""
    return list(
        _unsettled(scope)
        .filter(status=SignatureStatus.PENDING)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lte=timezone.now()))
        .values_list("pk", flat=True)
    )


def _settle(scope: Plan, result: BackfillResult, wait_seconds: float) -> None:
    """Wait (bounded) for rows other workers hold; take over any whose worker let go
    unfinished; then count what is still not signed."""
    deadline = time.monotonic() + wait_seconds
    while True:
        while _held(scope).exists() and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
        abandoned = _abandoned(scope)
        if not abandoned:
            break
        outcome = sign_signatures(abandoned)
        result.signed += outcome.signed
        # A row skipped here was claimed by another worker between the look and the claim
        # (it let go and took it again): wait for it like the others, within the deadline.
        if not outcome.skipped or time.monotonic() >= deadline:
            break
        time.sleep(POLL_SECONDS)
    result.still_held = _held(scope).count()
    unsettled = _unsettled(scope).exclude(claimed_until__gt=timezone.now())
    result.failed = unsettled.count()
    result.failures = [
        f"{repository}@{digest}: {reason or 'not signed'}"
        for repository, digest, reason in unsettled.order_by("pk").values_list(
            "manifest__repository__name", "manifest__digest", "failure_reason"
        )[:100]
    ]


def backfill(
    scope: Plan,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
    progress: Callable[[str], None] | None = None,
) -> BackfillResult:
    """Sign every image in ``scope`` its policy's current key has not signed.

    Resumable and safe to run beside other backfills, the webhook and the retry job:
    each row is signed by whichever worker claims it first. Raises the ``DomainError``
    ``request_signing`` raises (e.g. a policy deleted meanwhile).
    """
    say = progress or (lambda line: None)
    result = BackfillResult()
    release_dead_workers()  # their rows are this run's to sign, not "taken by another worker"
    started = time.monotonic()
    for number, ids in enumerate(pages(scope.roots, batch_size), start=1):
        _sign_page(ids, result)
        elapsed = max(time.monotonic() - started, 1e-9)
        say(
            f"batch {number}: {result.done}/{scope.total} images "
            f"({result.signed} signed, {result.already_signed} already signed, "
            f"{result.attempts_failed} failed) {result.signed / elapsed:.1f} signed/s"
        )
    _settle(scope, result, wait_seconds)
    return result
