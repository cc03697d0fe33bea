"""Reads of the signing app: querysets, conditions and health, no writes (services write)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce, Concat
from django.utils import timezone

from kms import services as kms_services
from kms.models import Key, KeyState, KeyUsage
from registry.models import Instance, Manifest, Tag
from signing.constants import SERVICE, UNVERIFIED_CODES
from signing.models import (
    ArtifactCleanup,
    OperationKind,
    Signature,
    SignatureStatus,
    SigningOperation,
    SigningOperationItem,
    SigningPolicy,
)


def suitable_keys() -> QuerySet[Key]:
    """Keys a policy may use (what the admin's key picker offers)."""
    return Key.objects.defer("sealed_private_key").filter(
        key_usage=KeyUsage.RSA_2048, state=KeyState.ENABLED
    )


def resign_candidates(policy: SigningPolicy) -> QuerySet[Signature]:
    """Signed images signed with another key, or for another domain, than the policy's."""
    return policy.signatures.filter(status=SignatureStatus.SIGNED).filter(
        ~Q(key_id=policy.key_id) | ~Q(docker_reference=_expected_reference())
    )


@dataclass(frozen=True)
class Health:
    ok: bool
    message: str


def policy_health(policy: SigningPolicy, *, authorized: bool | None = None) -> Health:
    """``authorized``: the caller's lookup of the service grant (a list asks once)."""
    key = policy.key
    if key.state != KeyState.ENABLED:
        return Health(False, f"Key {key.alias} is {key.state}: new images are not signed.")
    if authorized is None:
        authorized = kms_services.is_service_authorized(SERVICE)
    if not authorized:
        return Health(False, "The registry signing service is not authorized to use KMS keys.")
    if policy.disabled:
        return Health(True, "Disabled: new pushes are not signed automatically.")
    return Health(True, "Signing new pushes.")


def signatures_removed_by_deleting(policy: SigningPolicy) -> int:
    return policy.signatures.count()


def _expected_reference() -> Concat:
    return Concat(F("policy__domain"), Value("/"), F("manifest__repository__name"))


def needs_signing() -> Q:
    """Rows not yet signed, or signed with another key or for another domain than their
    policy's now (a re-sign replaces them)."""
    return (
        ~Q(status=SignatureStatus.SIGNED)
        | ~Q(key_id=F("policy__key_id"))
        | ~Q(docker_reference=_expected_reference())
    )


def given_up() -> Q:
    """Rows no longer retried on their own: the registry kept answering that it does not
    hold (or cannot prove) the image. They stay failed and visible until a person asks
    again (retry, sign: the tries start over); a new push gets the one try it triggers."""
    return Q(
        failure_code__in=UNVERIFIED_CODES,
        attempts__gte=settings.SIGNING_MANIFEST_CHECK_ATTEMPTS,
    )


def never_claimed(ids: Sequence[int]) -> list[int]:
    """Rows among ``ids`` still pending with no claim and no next attempt: after a worker's
    pass over them, the ones whose claim met a database error (any other outcome leaves a
    status, a claim, or a next attempt)."""
    return list(
        Signature.objects.filter(
            pk__in=ids,
            status=SignatureStatus.PENDING,
            claimed_until__isnull=True,
            next_attempt_at__isnull=True,
        )
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def manifests_with_children(manifests: Iterable[Manifest]) -> list[Manifest]:
    """The manifests plus the recorded children of any index among them."""
    result: dict[int, Manifest] = {}
    for manifest in manifests:
        result[manifest.pk] = manifest
    index_ids = [m.pk for m in result.values() if m.is_index]
    if index_ids:
        for child in Manifest.objects.filter(
            parent_references__parent_id__in=index_ids
        ).select_related("repository"):
            result.setdefault(child.pk, child)
    return list(result.values())


def tags_in_scope(
    *,
    instance: Instance,
    namespace: str | None = None,
    repository: str | None = None,
    tags: Sequence[str] | None = None,
) -> QuerySet[Tag]:
    queryset = Tag.objects.select_related("manifest__repository__namespace").filter(
        repository__namespace__instance=instance
    )
    if namespace:
        queryset = queryset.filter(repository__namespace__name=namespace)
    if repository:
        full = (
            repository
            if namespace is None or repository.startswith(f"{namespace}/")
            else (f"{namespace}/{repository}")
        )
        queryset = queryset.filter(repository__name=full)
    if tags:
        queryset = queryset.filter(name__in=list(tags))
    return queryset.order_by("id")


def pending_report() -> dict[str, object]:
    """For /healthz: how many rows wait to be signed, and how long the oldest has waited
    (seconds; null when none waits). Minutes here mean a stall, not a slow registry."""
    pending = Signature.objects.filter(status=SignatureStatus.PENDING)
    oldest = pending.order_by("created_at").values_list("created_at", flat=True).first()
    return {
        "signing": {
            "pending": pending.count(),
            "oldest_pending_seconds": (
                None
                if oldest is None
                else round(max((timezone.now() - oldest).total_seconds(), 0.0), 1)
            ),
        }
    }


def waiting_seconds(signature: Signature) -> float | None:
    """How long a pending row has waited to be signed (None once it is not pending)."""
    if signature.status != SignatureStatus.PENDING:
        return None
    return round(max((timezone.now() - signature.created_at).total_seconds(), 0.0), 1)


# --- operations: progress read from the rows they cover ----------------------------------


def _signature_conditions(prefix: str, started: Any) -> tuple[Q, Q]:
    """(signed, failed) for the signature reached by ``prefix`` (e.g. ``"signature__"``),
    judged against an operation started at ``started`` (an expression).

    Signed: signed since the start, or signed as its policy wants now (a row another
    worker finished just before the request counts as done, not pending forever).
    Failed: not signed, and a try since the start failed (a re-sign that failed keeps
    its old signature and ``status`` signed, hence the failure code, not the status).
    """

    def field(name: str) -> str:
        return f"{prefix}{name}"

    reference = Concat(
        F(field("policy__domain")), Value("/"), F(field("manifest__repository__name"))
    )
    as_wanted = Q(
        **{
            field("status"): SignatureStatus.SIGNED,
            field("key_id"): F(field("policy__key_id")),
            field("docker_reference"): reference,
            field("failure_code"): "",
        }
    )
    signed = Q(**{field("status"): SignatureStatus.SIGNED, field("signed_at__gte"): started})
    signed |= as_wanted
    failed = ~signed & ~Q(**{field("failure_code"): ""}) & Q(**{field("updated_at__gte"): started})
    return signed, failed


def operations_with_progress() -> QuerySet[SigningOperation]:
    """Operations with their counts, for any number of them in one query."""
    signed, failed = _signature_conditions("items__signature__", F("created_at"))
    cleanups = ArtifactCleanup.objects.filter(operation_id=OuterRef("pk")).order_by()
    left = cleanups.values("operation_id").annotate(n=Count("id")).values("n")
    left_failed = (
        cleanups.exclude(last_error="").values("operation_id").annotate(n=Count("id")).values("n")
    )
    return (
        SigningOperation.objects.select_related("created_by", "policy", "instance")
        .annotate(
            _total=Count("items", distinct=True),
            _signed=Count("items", filter=signed, distinct=True),
            _failed=Count("items", filter=failed, distinct=True),
            _artifacts_left=Coalesce(Subquery(left), 0),
            _artifacts_failed=Coalesce(Subquery(left_failed), 0),
        )
        .order_by("-created_at", "-id")
    )


@dataclass(frozen=True)
class Progress:
    total: int
    pending: int
    signed: int
    failed: int
    removed: int  # policy deletion: .sig artifacts removed

    @property
    def state(self) -> str:
        return "running" if self.pending else "finished"

    @property
    def done(self) -> int:
        return self.total - self.pending


def progress_of(operation: SigningOperation) -> Progress:
    """The counts of an operation read through ``operations_with_progress``."""
    o: Any = operation
    if operation.kind == OperationKind.DELETE_POLICY:
        left, failed = o._artifacts_left, o._artifacts_failed
        total = max(operation.artifacts, left)
        return Progress(total, left - failed, 0, failed, total - left)
    pending = o._total - o._signed - o._failed
    return Progress(o._total, pending, o._signed, o._failed, 0)


def operation_progress(operation_id: int) -> tuple[SigningOperation, Progress] | None:
    operation = operations_with_progress().filter(pk=operation_id).first()
    return None if operation is None else (operation, progress_of(operation))


def running_operation(policy: SigningPolicy, kind: str) -> SigningOperation | None:
    """The policy's unfinished operation of ``kind`` (its counts annotated), if any."""
    return (
        operations_with_progress()
        .filter(policy=policy, kind=kind, finished_at__isnull=True)
        .first()
    )


def in_flight() -> Q:
    """Signature rows an unfinished operation asked for that are not done yet: pending
    for the people watching, whatever their status column says (a re-sign keeps the old
    signature, ``signed``, until the new one is made)."""
    signed, failed = _signature_conditions("signature__", F("operation__created_at"))
    waiting = SigningOperationItem.objects.filter(
        ~signed & ~failed, signature_id=OuterRef("pk"), operation__finished_at__isnull=True
    )
    return Q(status=SignatureStatus.PENDING) | Q(Exists(waiting))


def unsigned_images(policy: SigningPolicy) -> QuerySet[Manifest]:
    """Tagged images of the policy's namespace it has no signature row for (never asked:
    pushed before the policy existed)."""
    return (
        Manifest.objects.filter(repository__namespace_id=policy.namespace_id, tags__isnull=False)
        .exclude(Exists(Signature.objects.filter(policy=policy, manifest_id=OuterRef("pk"))))
        .distinct()
    )


def operation_failures(operation: SigningOperation, limit: int = 100) -> list[str]:
    """``repository@digest: reason`` of the rows that failed since it started."""
    _, failed = _signature_conditions("signature__", F("operation__created_at"))
    rows = (
        SigningOperationItem.objects.filter(failed, operation=operation)
        .order_by("signature_id")
        .values_list(
            "signature__manifest__repository__name",
            "signature__manifest__digest",
            "signature__failure_reason",
        )[:limit]
    )
    return [f"{repository}@{digest}: {reason}" for repository, digest, reason in rows]
