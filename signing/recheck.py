"""Check the signatures Signet has published against what the registry holds.

Before Signet fetched every image by digest, a forged push event could get a digest the
registry never held signed. ``recheck_signatures`` finds such signatures after an
upgrade: each signed row's image is fetched by digest and verified exactly as the worker
does before signing. With ``remove``, the row is failed and this key's layer is taken out
of the ``.sig`` artifact. A signature already copied elsewhere stays valid for anyone who
trusts the key: rotate the key (point the policy at a new one and re-sign) to end that.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from audit import services as audit
from config.errors import DomainError
from registry.models import Instance
from signing.errors import ManifestNotVerified, ManifestUnknown
from signing.models import CleanupReason, Signature, SignatureStatus
from signing.services.cleanups import queue_cleanups, run_cleanups
from signing.subjects import fetch_subject


@dataclass
class RecheckResult:
    checked: int = 0
    held: int = 0
    not_held: list[str] = field(default_factory=list)  # "repository@digest: code"
    removed: int = 0
    # Held, but not what the signer would sign now (e.g. too large, another media type):
    # reported, never revoked by this command.
    unverified: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def recheck_signatures(
    *,
    instance: Instance,
    namespace: str | None = None,
    remove: bool = False,
    batch_size: int = 200,
    progress: Callable[[str], None] | None = None,
) -> RecheckResult:
    """Verify every signed image of ``instance`` (or one namespace) in the registry.

    Pages by primary key, one short query a page, no transaction held while the registry
    answers."""
    result = RecheckResult()
    say = progress or (lambda message: None)
    client = instance.registry_client()  # InstanceMisconfigured: the caller reports it
    signed = Signature.objects.filter(
        policy__namespace__instance=instance, status=SignatureStatus.SIGNED
    )
    if namespace:
        signed = signed.filter(policy__namespace__name=namespace)
    last = 0
    while True:
        page = list(
            signed.filter(pk__gt=last)
            .order_by("pk")
            .values_list("pk", "manifest__repository__name", "manifest__digest")[:batch_size]
        )
        if not page:
            return result
        last = page[-1][0]
        for pk, repository, digest in page:
            _recheck_one(client, instance, pk, repository, digest, remove=remove, result=result)
        say(f"{result.checked} checked, {len(result.not_held)} not held by the registry")


def _recheck_one(
    client,
    instance: Instance,
    pk: int,
    repository: str,
    digest: str,
    *,
    remove: bool,
    result: RecheckResult,
) -> None:
    """Fetch one signed image by digest and count what the registry answered."""
    result.checked += 1
    try:
        fetch_subject(client, repository, digest)
    except ManifestUnknown as exc:
        # Asked twice: a registry may answer 404 for a moment while it writes.
        if client.head_manifest(repository, digest) is not None:
            result.held += 1
            return
        result.not_held.append(f"{repository}@{digest}: {exc.code}")
        if remove and _revoke(instance, pk, exc):
            result.removed += 1
    except ManifestNotVerified as exc:
        result.unverified.append(f"{repository}@{digest}: {exc.message}")
    except DomainError as exc:
        result.errors.append(f"{repository}@{digest}: {exc.message}")
    else:
        result.held += 1


def _revoke(instance: Instance, signature_id: int, exc: DomainError) -> bool:
    """Fail the row and queue the removal of its key's layer; False if it changed meanwhile."""
    with transaction.atomic():
        now = timezone.now()
        signature = (
            Signature.objects.select_for_update(of=("self",))
            .select_related("manifest__repository", "policy__namespace")
            .filter(pk=signature_id, status=SignatureStatus.SIGNED)
            # A row a worker holds is being signed again right now: leave it to the worker.
            .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
            .first()
        )
        if signature is None:
            return False
        repository = signature.manifest.repository.name
        cleanup_ids = queue_cleanups(
            instance,
            [(repository, signature.manifest.digest, signature.key_fingerprint)],
            CleanupReason.NOT_IN_REGISTRY,
        )
        Signature.objects.filter(pk=signature_id).update(
            status=SignatureStatus.FAILED,
            failure_code=exc.code,
            failure_reason=exc.message[:2000],
            sig_manifest_digest="",
            # Given up: the scheduled retry leaves it alone until someone asks again.
            attempts=settings.SIGNING_MANIFEST_CHECK_ATTEMPTS,
            next_attempt_at=None,
            updated_at=now,
        )
        audit.record(
            "signing.signature.revoked",
            obj=signature,
            object_repr=f"{repository}@{signature.manifest.digest}",
            instance=instance,
            namespace_name=signature.policy.namespace.name,
            details={
                "code": exc.code,
                "reason": exc.message[:500],
                "key_fingerprint": signature.key_fingerprint,
            },
        )
    run_cleanups(cleanup_ids)
    return True
