"""Operations: bulk sign, re-sign, retry failed, sign the existing images, delete a policy.

Each request records a ``SigningOperation`` and the signature rows it covers, marks them
pending, hands them to the workers (``signing.dispatch``: Celery or the thread pool) and
answers at once; nothing is signed in the request. Its progress is read from the rows
(``signing.selectors.operations_with_progress``); ``settle`` records when it finished.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from registry.models import Manifest
from signing.dispatch import dispatch
from signing.errors import MixedInstances, NothingToDo, OperationInProgress
from signing.models import (
    ArtifactCleanup,
    CleanupReason,
    OperationKind,
    Signature,
    SignatureStatus,
    SigningOperation,
    SigningOperationItem,
    SigningPolicy,
    Trigger,
)
from signing.selectors import (
    given_up,
    operations_with_progress,
    progress_of,
    resign_candidates,
    unsigned_images,
)
from signing.services.policies import delete_policy
from signing.services.requests import _audit_retry, audit_sign_request, make_pending
from signing.services.worker import SignOutcome, sign_signatures

_TRIGGERS = {
    OperationKind.SIGN: Trigger.MANUAL,
    OperationKind.SIGN_EXISTING: Trigger.MANUAL,
    OperationKind.RESIGN: Trigger.RESIGN,
}


@dataclass
class Started:
    """An operation just started, and what the request found."""

    operation: SigningOperation
    requested: int = 0
    already_signed: int = 0
    no_policy: int = 0
    queued: int = 0


def _create(kind: str, *, actor, policy: SigningPolicy | None = None, **scope) -> SigningOperation:
    """``scope``: ``namespace`` or ``instance`` (else the policy's), plus counts."""
    namespace = scope.pop("namespace", None)
    instance = scope.pop("instance", None)
    if policy is not None:
        namespace = policy.namespace
    if namespace is not None:
        instance = namespace.instance
    return SigningOperation.objects.create(
        kind=kind,
        created_by=actor if getattr(actor, "pk", None) else None,
        created_at=timezone.now(),
        policy=policy,
        instance=instance,
        namespace=namespace,
        namespace_name=namespace.name if namespace is not None else "",
        **scope,
    )


def _cover(operation: SigningOperation, ids: Sequence[int]) -> None:
    """The rows become the operation's, and pending: a failed row asked for again shows
    under Pending until a worker has tried it (its reason stays until then). A signed row
    (a re-sign) keeps its valid old signature and status until the new one is made."""
    SigningOperationItem.objects.bulk_create(
        [SigningOperationItem(operation=operation, signature_id=pk) for pk in ids],
        batch_size=1000,
    )
    Signature.objects.filter(pk__in=ids, status=SignatureStatus.FAILED).update(
        status=SignatureStatus.PENDING
    )


def _hand_over(ids: Sequence[int]) -> None:
    """To the workers, once the rows are committed (``dispatch`` waits for the commit)."""
    if ids:
        dispatch(sign_signatures, list(ids))


def _scope_of(manifests: Sequence[Manifest]) -> dict:
    namespaces = {m.repository.namespace_id: m.repository.namespace for m in manifests}
    instances = {namespace.instance_id for namespace in namespaces.values()}
    if len(instances) != 1:
        raise MixedInstances("Select images of one registry instance at a time.")
    if len(namespaces) == 1:
        return {"namespace": next(iter(namespaces.values()))}
    return {"instance": next(iter(namespaces.values())).instance}


def start_signing(
    *,
    manifests: Iterable[Manifest],
    actor=None,
    kind: str = OperationKind.SIGN,
    policy: SigningPolicy | None = None,
) -> Started:
    """Sign these images (and an index's children): rows pending now, signed by the
    workers. The images must be of one instance (an operation has one scope)."""
    manifests = list(manifests)
    if not manifests:
        raise NothingToDo("No image to sign.")
    scope = _scope_of(manifests)
    trigger = _TRIGGERS[OperationKind(kind)]
    with transaction.atomic():
        # Created first: its start is before any row's change it reads as progress.
        operation = _create(kind, actor=actor, policy=policy, **scope)
        pending = make_pending(manifests=manifests, trigger=trigger, actor=actor)
        result = pending.result
        if policy is None and len(pending.policies) == 1:
            operation.policy = next(iter(pending.policies.values()))
        operation.requested = result.requested
        operation.already_signed = result.already_signed
        operation.no_policy = result.no_policy
        operation.save(update_fields=["policy", "requested", "already_signed", "no_policy"])
        _cover(operation, result.signature_ids)
        if not result.signature_ids:
            operation.finished_at = operation.created_at
            operation.save(update_fields=["finished_at"])
    result.queued = len(result.signature_ids)
    _hand_over(result.signature_ids)
    audit_sign_request(pending, trigger=trigger, actor=actor, operation=operation.pk)
    return Started(
        operation,
        requested=result.requested,
        already_signed=result.already_signed,
        no_policy=result.no_policy,
        queued=result.queued,
    )


def start_resign(*, policy: SigningPolicy, actor=None) -> Started:
    """Re-sign what an earlier key (or domain) signed. One re-sign of a policy at a
    time: a second request while one runs is refused (``OperationInProgress``, 409)."""
    with transaction.atomic():
        locked = SigningPolicy.objects.select_for_update().get(pk=policy.pk)
        running = (
            operations_with_progress()
            .filter(policy=locked, kind=OperationKind.RESIGN, finished_at__isnull=True)
            .first()
        )
        if running is not None and not settle(running):
            progress = progress_of(running)
            raise OperationInProgress(
                f"A re-sign of policy {locked.name} is in progress "
                f"({progress.done}/{progress.total}); wait for it to finish.",
                operation=running.pk,
            )
        manifests = list(
            Manifest.objects.filter(
                pk__in=resign_candidates(locked).values("manifest_id")
            ).select_related("repository__namespace__instance")
        )
        if not manifests:
            raise NothingToDo(
                f"Every signature is already made with key {locked.key.alias}; nothing to re-sign.",
                policy=locked.pk,
            )
        try:
            with transaction.atomic():
                return start_signing(
                    manifests=manifests, actor=actor, kind=OperationKind.RESIGN, policy=locked
                )
        except IntegrityError:  # the constraint settles a race the lock did not see
            raise OperationInProgress(
                f"A re-sign of policy {locked.name} is in progress; wait for it to finish."
            ) from None


def start_sign_existing(*, policy: SigningPolicy, actor=None) -> Started:
    """Sign the namespace's images pushed before the policy existed ("Sign them now")."""
    manifests = list(unsigned_images(policy).select_related("repository__namespace__instance"))
    if not manifests:
        raise NothingToDo(f"Every image in {policy.namespace.name} has a signature already.")
    return start_signing(
        manifests=manifests, actor=actor, kind=OperationKind.SIGN_EXISTING, policy=policy
    )


def start_retry(*, policy: SigningPolicy, actor=None) -> Started:
    """Sign the policy's failed rows again, now (their backoff waived)."""
    with transaction.atomic():
        ids = list(
            Signature.objects.select_for_update(skip_locked=True)
            .filter(policy=policy, status=SignatureStatus.FAILED)
            .values_list("pk", flat=True)
        )
        if not ids:
            raise NothingToDo(f"Policy {policy.name} has no failed signatures.")
        operation = _create(OperationKind.RETRY, actor=actor, policy=policy, requested=len(ids))
        # Due now; a row given up earns its tries again (else the scheduled retry skips it).
        rows = Signature.objects.filter(pk__in=ids)
        rows.update(next_attempt_at=operation.created_at)
        rows.filter(given_up()).update(attempts=0)
        _cover(operation, ids)
    _hand_over(ids)
    _audit_retry(ids, SignOutcome(), trigger="retry", actor=actor, operation=operation.pk)
    return Started(operation, requested=len(ids), queued=len(ids))


def start_policy_deletion(*, policy: SigningPolicy, actor=None) -> Started:
    """Delete the policy (its rows at once); the registry's ``.sig`` removals it queues
    are the operation's progress."""
    with transaction.atomic():
        operation = _create(OperationKind.DELETE_POLICY, actor=actor, policy=policy)
        removed = delete_policy(policy=policy)
        # The removals delete_policy queued for this instance (its transaction is ours).
        queued = ArtifactCleanup.objects.filter(
            instance_id=operation.instance_id,
            reason=CleanupReason.POLICY_DELETED,
            operation__isnull=True,
            created_at__gte=operation.created_at,
        )
        count = queued.update(operation=operation)
        operation.requested = removed
        operation.artifacts = count
        operation.save(update_fields=["requested", "artifacts"])
    return Started(operation, requested=removed, queued=count)


def settle(operation: SigningOperation) -> bool:
    """Record the end of an operation whose counts (annotated) show nothing pending.
    True when it is finished."""
    if operation.finished_at is not None:
        return True
    if progress_of(operation).pending:
        return False
    operation.finished_at = timezone.now()
    SigningOperation.objects.filter(pk=operation.pk, finished_at__isnull=True).update(
        finished_at=operation.finished_at
    )
    return True


def settle_operations() -> int:
    """Record the end of every operation with nothing pending (the periodic retry)."""
    settled = 0
    for operation in operations_with_progress().filter(finished_at__isnull=True):
        if settle(operation):
            settled += 1
    return settled
