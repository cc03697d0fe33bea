"""Reads of the signing app: querysets, conditions and health, no writes (services write)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db.models import F, Q, QuerySet, Value
from django.db.models.functions import Concat
from django.utils import timezone

from kms import services as kms_services
from kms.models import Key, KeyState, KeyUsage
from registry.models import Instance, Manifest, Tag
from signing.constants import SERVICE, UNVERIFIED_CODES
from signing.models import Signature, SignatureStatus, SigningPolicy


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
