"""On-demand signing: sign, re-sign and retry at a person's (or the scheduler's) request."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from audit import services as audit
from registry.models import Manifest, Namespace
from signing.constants import CLAIM_SECONDS
from signing.dispatch import dispatch
from signing.errors import NoSigningPolicy
from signing.models import Signature, SigningPolicy, Trigger
from signing.selectors import given_up, manifests_with_children, needs_signing, resign_candidates
from signing.services.cleanups import run_cleanups
from signing.services.recovery import stalled
from signing.services.worker import SignOutcome, ensure_pending, sign_signatures
from signing.services.workers import release_dead_workers


@dataclass
class SignRequestResult:
    requested: int = 0
    already_signed: int = 0
    queued: int = 0
    no_policy: int = 0
    outcome: SignOutcome = field(default_factory=SignOutcome)
    signature_ids: list[int] = field(default_factory=list)


def _only_namespace(namespaces: Iterable[tuple[str, str]]) -> str:
    """The namespace name when every ``(instance name, namespace name)`` is the same one,
    else "" (an event about several namespaces is for whole-instance memberships only)."""
    distinct = set(namespaces)
    return next(iter(distinct))[1] if len(distinct) == 1 else ""


def _audit_sign_request(result, manifests, policies, *, trigger: str, actor, **extra) -> None:
    """One ``signing.sign.requested`` event: who, what scope, how many."""
    namespaces = list(
        Namespace.objects.filter(pk__in={m.repository.namespace_id for m in manifests}).values_list(
            "instance__name", "name"
        )
    )
    instances = sorted({instance for instance, _ in namespaces})
    audit.record(
        "signing.sign.requested",
        obj=next(iter(policies.values())) if len(policies) == 1 else None,
        instance_name=instances[0] if len(instances) == 1 else "",
        namespace_name=_only_namespace(namespaces),
        actor=actor,
        details={
            "trigger": trigger,
            "instances": instances,
            "namespaces": sorted({m.repository.name.split("/", 1)[0] for m in manifests}),
            "repositories": sorted({m.repository.name for m in manifests}),
            "manifests": result.requested,
            "no_policy": result.no_policy,
            "already_signed": result.already_signed,
            "signed": result.outcome.signed,
            "failed": result.outcome.failed,
            "skipped": result.outcome.skipped,
            "queued": result.queued,
            **extra,
        },
    )


def _audit_retry(
    ids: Sequence[int], outcome: SignOutcome, *, trigger: str, actor=None, **extra
) -> None:
    rows = set(
        Signature.objects.filter(pk__in=ids).values_list(
            "policy_id", "policy__namespace__instance__name", "policy__namespace__name"
        )
    )
    policy = (
        SigningPolicy.objects.filter(pk=next(iter(rows))[0]).first() if len(rows) == 1 else None
    )
    instances = sorted({instance for _, instance, _ in rows})
    audit.record(
        "signing.sign.requested",
        obj=policy,
        instance_name=instances[0] if len(instances) == 1 else "",
        namespace_name=_only_namespace({(instance, ns) for _, instance, ns in rows}),
        actor=actor,
        details={
            "trigger": trigger,
            "instances": instances,
            "signatures": len(ids),
            "signature_ids": list(ids),
            "signed": outcome.signed,
            "failed": outcome.failed,
            "skipped": outcome.skipped,
            # Handed to the background dispatcher (beyond the synchronous limit).
            "queued": len(ids) - outcome.signed - outcome.failed - outcome.skipped,
            **extra,
        },
    )


@dataclass
class PendingRequest:
    """A sign request's rows, made pending (not signed yet): what ``request_signing`` and
    the operations (``signing.services.operations``) start from."""

    result: SignRequestResult
    manifests: list[Manifest]
    policies: dict[int, SigningPolicy]


def make_pending(
    *, manifests: Iterable[Manifest], trigger: str = Trigger.MANUAL, actor=None
) -> PendingRequest:
    """The signature rows of the images (and an index's children) that need signing,
    created or marked pending in one transaction; those already signed are counted."""
    manifests = manifests_with_children(manifests)
    result = SignRequestResult(requested=len(manifests))
    namespace_ids = {m.repository.namespace_id for m in manifests}
    policies = {
        p.namespace_id: p
        for p in SigningPolicy.objects.select_related("key").filter(namespace_id__in=namespace_ids)
    }
    pairs = []
    for manifest in manifests:
        policy = policies.get(manifest.repository.namespace_id)
        if policy is None:
            result.no_policy += 1
        else:
            pairs.append((policy, manifest))
    if not pairs and result.no_policy:
        namespace = manifests[0].repository.namespace
        raise NoSigningPolicy(
            f"Namespace {namespace.name} has no signing policy; create one before signing.",
            namespace=namespace.name,
        )
    with transaction.atomic():
        ids = ensure_pending(pairs, trigger=trigger, actor=actor)
    result.already_signed = len(pairs) - len(ids)
    result.signature_ids = ids
    return PendingRequest(result, manifests, policies)


def audit_sign_request(request: PendingRequest, *, trigger: str, actor, **extra) -> None:
    _audit_sign_request(
        request.result, request.manifests, request.policies, trigger=trigger, actor=actor, **extra
    )


def request_signing(
    *,
    manifests: Iterable[Manifest],
    trigger: str = Trigger.MANUAL,
    actor=None,
    synchronous_limit: int | None = None,
) -> SignRequestResult:
    """Sign existing images on demand (row button, backfill, commands).

    Up to ``synchronous_limit`` rows (default ``SIGNING_SYNC_LIMIT``) are signed before
    returning; beyond that the rest is handed to the background dispatcher. Bulk requests
    from people (admin actions, the API) start an operation instead and answer at once
    (``signing.services.operations``).
    """
    limit = settings.SIGNING_SYNC_LIMIT if synchronous_limit is None else synchronous_limit
    pending = make_pending(manifests=manifests, trigger=trigger, actor=actor)
    result, ids = pending.result, pending.result.signature_ids
    now_ids, later_ids = ids[:limit], ids[limit:]
    result.outcome = sign_signatures(now_ids)
    if later_ids:
        dispatch(sign_signatures, later_ids)
        result.queued = len(later_ids)
    audit_sign_request(pending, trigger=trigger, actor=actor)
    return result


def resign_policy(*, policy: SigningPolicy, actor=None) -> SignRequestResult:
    """Re-sign everything the policy's earlier key(s) signed, with its current key."""
    manifests = Manifest.objects.filter(
        pk__in=resign_candidates(policy).values("manifest_id")
    ).select_related("repository")
    return request_signing(manifests=list(manifests), trigger=Trigger.RESIGN, actor=actor)


def retry_signatures(*, now=None, limit: int | None = None) -> SignOutcome:
    """Retry what failed (its backoff elapsed), pending rows nobody finished (a dead
    worker's at once), and cleanups."""
    now = now or timezone.now()
    stale = now - timedelta(seconds=CLAIM_SECONDS)
    release_dead_workers(now)
    due = (
        Signature.objects.filter(needs_signing())
        .exclude(given_up())
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .filter(
            # Backoff elapsed (failed rows, failed re-signs), or work handed off and never
            # finished (a restart, a killed request): nothing that needs signing is left out.
            Q(next_attempt_at__lte=now)
            | Q(next_attempt_at__isnull=True, updated_at__lte=stale)
            | stalled(now)
        )
        .order_by("next_attempt_at", "id")
        .values_list("id", flat=True)
    )
    ids = list(due[:limit] if limit else due)
    outcome = sign_signatures(ids)
    run_cleanups(now=now)
    if ids:
        _audit_retry(ids, outcome, trigger="scheduled-retry")
    # Imported here: operations builds on this module (make_pending); same layer.
    from signing.services.operations import settle_operations

    settle_operations()
    return outcome


def retry_now(*, signatures: Iterable[Signature]) -> SignOutcome:
    """Admin/API "retry": sign the given failed or pending rows at once."""
    ids = [s.pk for s in signatures]
    # Due now, so the scheduled retry takes over whatever this request does not finish; a
    # row given up earns its tries again (else the scheduled retry would skip it).
    Signature.objects.filter(pk__in=ids).update(next_attempt_at=timezone.now())
    Signature.objects.filter(given_up(), pk__in=ids).update(attempts=0)
    limit = settings.SIGNING_SYNC_LIMIT
    outcome = sign_signatures(ids[:limit])
    if ids[limit:]:
        dispatch(sign_signatures, ids[limit:])
    if ids:
        _audit_retry(ids, outcome, trigger="retry")
    return outcome
