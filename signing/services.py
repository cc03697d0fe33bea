"""Signing operations. The registry push hook, admin, API and commands all call these."""

from __future__ import annotations

import base64
import logging
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import F, Q, QuerySet, Value
from django.db.models.functions import Concat
from django.utils import timezone

from audit import services as audit
from config.errors import DomainError
from kms import services as kms_services
from kms.clients import get_kms_client
from kms.errors import KeyInUse, KeyNotFound
from kms.models import AuthorizedService, Key, KeyState, KeyUsage
from registry.models import Instance, Manifest, Namespace, Tag
from registry.reconcile import reconcile_manifest
from signing import artifacts
from signing.errors import (
    InvalidPolicy,
    KeyNotSuitable,
    ManifestNotVerified,
    ManifestUnknown,
    NoSigningPolicy,
    PolicyExists,
)
from signing.models import (
    ArtifactCleanup,
    CleanupReason,
    Signature,
    SignatureStatus,
    SigningPolicy,
    Trigger,
)
from signing.naming import policy_name_problem
from signing.payload import SignatureLayer, build_payload, signing_annotations
from signing.restore import restore_records
from signing.subjects import Subject, fetch_subject

logger = logging.getLogger(__name__)

SIGNING_ALGORITHM = "RSA_PKCS1_SHA_256"
SERVICE = AuthorizedService.REGISTRY_SIGNING
CLAIM_SECONDS = 300
# Failures that mean "the registry does not hold (or cannot prove) this image": retried a
# bounded number of times (SIGNING_MANIFEST_CHECK_ATTEMPTS), then left failed and visible.
UNVERIFIED_CODES = (ManifestUnknown.code, ManifestNotVerified.code)


# --- policies ---------------------------------------------------------------------------


@dataclass
class PolicyOutcome:
    policy: SigningPolicy
    warnings: list[str] = field(default_factory=list)
    # Signatures made with another key than the policy's (to offer a re-sign).
    resign_candidates: int = 0


def check_policy_name(name: str) -> None:
    if problem := policy_name_problem(name):
        raise InvalidPolicy("InvalidPolicyName", "name", problem)


def check_policy_key(key: Key) -> None:
    """Each reason a key cannot sign images, with what to do about it."""
    if key.key_usage != KeyUsage.RSA_2048:
        raise KeyNotSuitable(
            "InvalidKeyUsage",
            f"Key {key.alias} has usage {key.key_usage}; image signing needs a key with usage "
            f"{KeyUsage.RSA_2048} (asymmetric sign/verify, RSA 2048).",
        )
    if key.state == KeyState.DISABLED:
        raise KeyNotSuitable(
            "KeyDisabled", f"Key {key.alias} is disabled; enable it in the KMS first."
        )
    if key.state == KeyState.PENDING_DELETE:
        raise KeyNotSuitable(
            "KeyPendingDelete",
            f"Key {key.alias} is pending deletion; cancel the deletion and enable it first.",
        )
    kms_services.require_service_authorization(SERVICE)


def suitable_keys() -> QuerySet[Key]:
    """Keys a policy may use (what the admin's key picker offers)."""
    return Key.objects.defer("sealed_private_key").filter(
        key_usage=KeyUsage.RSA_2048, state=KeyState.ENABLED
    )


def _resolve_key(key: Key | str) -> Key:
    # A Key object may be stale (disabled since it was loaded): check the stored state.
    key_id = str(key.key_id) if isinstance(key, Key) else key
    try:
        return kms_services.get_key(key_id=key_id)
    except KeyNotFound:
        raise InvalidPolicy("KeyNotFound", "key", f"No KMS key with id {key}.") from None


def _check_domain(namespace: Namespace, domain: str) -> None:
    allowed = namespace.instance.domain_names()
    if domain not in allowed:
        raise InvalidPolicy(
            "InvalidDomain",
            "domain",
            f"Domain {domain!r} is not a domain name of instance {namespace.instance.name}; "
            f"choose one of {', '.join(allowed)}.",
        )
    if not ("." in domain or ":" in domain or domain == "localhost"):
        # The payload could not even be built (signing/payload.py refuses it).
        raise InvalidPolicy(
            "InvalidDomain",
            "domain",
            f"Domain {domain!r} has no '.' or ':', so verifiers read {domain}/<repository> as "
            "a Docker Hub path and its signatures could never verify; choose a fully "
            "qualified domain name (or one with a port).",
        )


def _region_warning(namespace: Namespace, key: Key) -> list[str]:
    if key.region != namespace.instance.region:
        return [
            f"Key {key.alias} is in region {key.region} and instance "
            f"{namespace.instance.name} in {namespace.instance.region}; keeping them in the "
            "same region is recommended to avoid cross-region calls."
        ]
    return []


def validate_policy(
    *, namespace: Namespace, name: str, key: Key, domain: str, kms_region: str | None = None
) -> list[str]:
    """All checks of a policy's fields; returns warnings. The admin and the API use it."""
    check_policy_name(name)
    check_policy_key(key)
    if kms_region and kms_region != key.region:
        raise InvalidPolicy(
            "InvalidKmsRegion",
            "kms_region",
            f"Key {key.alias} is in region {key.region}, not {kms_region}.",
        )
    _check_domain(namespace, domain)
    return _region_warning(namespace, key)


def create_policy(
    *,
    namespace: Namespace,
    name: str,
    key: Key | str,
    domain: str | None = None,
    kms_region: str | None = None,
    disabled: bool = False,
    created_by=None,
) -> PolicyOutcome:
    """CreateSignaturePolicy. Takes effect for new pushes at once; signs nothing existing."""
    key = _resolve_key(key)
    domain = domain or namespace.instance.default_domain
    warnings = validate_policy(
        namespace=namespace, name=name, key=key, domain=domain, kms_region=kms_region
    )
    if SigningPolicy.objects.filter(namespace=namespace).exists():
        raise _policy_exists(namespace)
    try:
        with transaction.atomic():
            # Lock the key: a deletion being scheduled now either sees this policy (its
            # guard refuses) or has already moved the key, which this re-check refuses.
            key = Key.objects.select_for_update().defer("sealed_private_key").get(pk=key.pk)
            check_policy_key(key)
            policy = SigningPolicy.objects.create(
                namespace=namespace,
                name=name,
                key=key,
                kms_region=key.region,
                domain=domain,
                disabled=disabled,
                created_by=created_by,
            )
            audit.record(
                "signing.policy.created",
                obj=policy,
                actor=created_by,
                instance=namespace.instance,
                namespace_name=namespace.name,
                details={
                    "namespace": namespace.name,
                    "key_id": key.key_id,
                    "key_alias": key.alias,
                    "domain": domain,
                    "kms_region": key.region,
                    "disabled": disabled,
                },
            )
    except IntegrityError:
        # A concurrent create won the race: the unique constraint settles it.
        raise _policy_exists(namespace) from None
    logger.info("signing policy created namespace=%s policy=%s", namespace, name)
    return PolicyOutcome(policy=policy, warnings=warnings)


def _policy_exists(namespace: Namespace) -> PolicyExists:
    return PolicyExists(
        f"Namespace {namespace.name} of instance {namespace.instance.name} already has a "
        "signing policy; only one policy per namespace is allowed. Change or delete it instead.",
        namespace=namespace.name,
    )


def update_policy(
    *,
    policy: SigningPolicy,
    name: str | None = None,
    key: Key | str | None = None,
    domain: str | None = None,
    disabled: bool | None = None,
) -> PolicyOutcome:
    """Change a policy. A new key does not re-sign by itself: see ``resign_policy``."""
    new_key = _resolve_key(key) if key is not None else policy.key
    new_name = name if name is not None else policy.name
    new_domain = domain if domain is not None else policy.domain
    if new_key.pk == policy.key_id:
        # The key is not changing: a policy whose key was disabled can still be renamed
        # or disabled; its health shows the key problem.
        check_policy_name(new_name)
        _check_domain(policy.namespace, new_domain)
        warnings = _region_warning(policy.namespace, new_key)
    else:
        warnings = validate_policy(
            namespace=policy.namespace, name=new_name, key=new_key, domain=new_domain
        )
    with transaction.atomic():
        if new_key.pk != policy.key_id:  # the same lock as create_policy (deletion race)
            new_key = Key.objects.select_for_update().defer("sealed_private_key").get(pk=new_key.pk)
            check_policy_key(new_key)
        locked = SigningPolicy.objects.select_for_update().get(pk=policy.pk)
        audited = ("name", "key_id", "domain", "kms_region", "disabled")
        before = {f: getattr(locked, f) for f in audited} | {"key_alias": locked.key.alias}
        locked.name, locked.key, locked.domain = new_name, new_key, new_domain
        locked.kms_region = new_key.region
        if disabled is not None:
            locked.disabled = disabled
        locked.save()
        after = {f: getattr(locked, f) for f in audited} | {"key_alias": new_key.alias}
        if changes := audit.diff(before, after):
            audit.record(
                "signing.policy.disabled"
                if changes.get("disabled") == [False, True]
                else "signing.policy.changed",
                obj=locked,
                instance=policy.namespace.instance,
                namespace_name=policy.namespace.name,
                changes=changes,
            )
    policy.refresh_from_db()
    return PolicyOutcome(
        policy=policy, warnings=warnings, resign_candidates=resign_candidates(policy).count()
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


def delete_policy(*, policy: SigningPolicy) -> int:
    """DeleteSignaturePolicy: also deletes the namespace's signatures, records and artifacts.

    Artifact removals are queued in the same transaction and run after commit; an
    unreachable registry leaves them queued for ``retry_signatures``.
    """
    with transaction.atomic():
        policy = SigningPolicy.objects.select_for_update().get(pk=policy.pk)
        instance = policy.namespace.instance
        # Lock the rows: a signing that finishes meanwhile then updates nothing and takes
        # its artifact back out itself, instead of publishing after we listed the artifacts.
        list(Signature.objects.select_for_update().filter(policy=policy).values_list("id"))
        published = (
            policy.signatures.exclude(sig_manifest_digest="")
            .values_list("manifest__repository__name", "manifest__digest", "key_fingerprint")
            .distinct()
            .iterator(chunk_size=2000)
        )
        cleanup_ids = _queue_cleanups(instance, published, CleanupReason.POLICY_DELETED)
        removed = policy.signatures.count()
        audit.record(
            "signing.policy.deleted",
            obj=policy,
            instance=instance,
            namespace_name=policy.namespace.name,
            details={
                "namespace": policy.namespace.name,
                "key_id": policy.key_id,
                "signatures_removed": removed,
            },
        )
        policy.delete()
    _after_commit_cleanups(cleanup_ids)
    logger.info("signing policy deleted policy=%s signatures_removed=%s", policy.name, removed)
    return removed


def refuse_deleting_policy_keys(key: Key) -> None:
    """KMS deletion guard: a key a policy uses cannot be scheduled for deletion."""
    names = list(
        SigningPolicy.objects.filter(key=key).values_list(
            "namespace__instance__name", "namespace__name", "name"
        )[:5]
    )
    if names:
        used = ", ".join(f"{name} (namespace {ns} of {inst})" for inst, ns, name in names)
        raise KeyInUse(
            f"Key {key.alias} is used by signing policy {used}; point the policy at another "
            "key or delete it before deleting the key.",
            key_id=str(key.key_id),
        )


# --- cleanups --------------------------------------------------------------------------------


def _queue_cleanups(
    instance: Instance, rows: Iterable[tuple[str, str, str]], reason: str
) -> list[int]:
    """Durable removal work for each (repository, digest, fingerprint)."""
    objs = [
        ArtifactCleanup(
            instance=instance,
            repository=repository,
            manifest_digest=digest,
            key_fingerprint=fingerprint,
            reason=reason,
        )
        for repository, digest, fingerprint in rows
    ]
    ArtifactCleanup.objects.bulk_create(objs, ignore_conflicts=True, batch_size=500)
    keys = {(o.repository, o.manifest_digest, o.key_fingerprint) for o in objs}
    if not keys:
        return []
    query = Q()
    for repository, digest, fingerprint in keys:
        query |= Q(repository=repository, manifest_digest=digest, key_fingerprint=fingerprint)
    if len(keys) > 500:  # too many to name one by one: the retry pass picks them up
        return list(ArtifactCleanup.objects.filter(instance=instance).values_list("id", flat=True))
    return list(
        ArtifactCleanup.objects.filter(query, instance=instance).values_list("id", flat=True)
    )


def _after_commit_cleanups(ids: Sequence[int]) -> None:
    if ids:
        from signing.dispatch import dispatch

        transaction.on_commit(lambda: dispatch(run_cleanups, list(ids)))


def _image_still_held(client, cleanup: ArtifactCleanup) -> bool:
    """A delete event only claims the image is gone: ask the registry before its signature
    goes. An image still there keeps its ``.sig`` (a forged or stale event), and Signet's
    records of it, which the event removed, are restored from the registry
    (``signing.restore``)."""
    if client.head_manifest(cleanup.repository, cleanup.manifest_digest) is None:
        return False
    logger.warning(
        "signature artifact kept %s@%s: the registry still holds the image the delete event named",
        cleanup.repository,
        cleanup.manifest_digest,
    )
    audit.record(
        "signing.artifact.kept",
        obj=None,
        object_repr=f"{cleanup.repository}@{cleanup.manifest_digest}",
        instance=cleanup.instance,
        namespace_name=cleanup.repository.split("/", 1)[0],
        details={
            "reason": "the registry still holds the image a delete event named; its "
            "signature stays, and Signet's records of the image, its tags and its "
            "signature are restored from the registry",
            "repository": cleanup.repository,
            "digest": cleanup.manifest_digest,
        },
    )
    restore_records(
        client,
        instance=cleanup.instance,
        repository=cleanup.repository,
        digest=cleanup.manifest_digest,
    )
    return True


def _paged(queryset: QuerySet, size: int) -> Iterable[Any]:
    """The rows by primary key, one complete read per page. Not ``.iterator()``: on SQLite
    its open statement keeps a read snapshot, and the first write after another
    connection commits fails at once with "database is locked"."""
    last = 0
    while page := list(queryset.filter(pk__gt=last).order_by("pk")[:size]):
        yield from page
        last = page[-1].pk


def run_cleanups(ids: Sequence[int] | None = None, *, now=None) -> tuple[int, int]:
    """Carry out queued artifact removals; returns (done, failed)."""
    now = now or timezone.now()
    queryset = ArtifactCleanup.objects.select_related("instance")
    if ids is not None:
        queryset = queryset.filter(pk__in=ids)
    else:
        queryset = queryset.filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
    done = failed = 0
    clients: dict[int, Any] = {}
    for cleanup in _paged(queryset, 200):
        try:
            client = clients.get(cleanup.instance_id) or cleanup.instance.registry_client()
            clients[cleanup.instance_id] = client
            if cleanup.reason == CleanupReason.IMAGE_DELETED and _image_still_held(client, cleanup):
                outcome = "kept"
            else:
                outcome = artifacts.remove(
                    client,
                    cleanup.repository,
                    cleanup.manifest_digest,
                    key_fingerprint=cleanup.key_fingerprint,
                )
        except (DomainError, ValueError) as exc:
            failed += 1
            attempts = cleanup.attempts + 1
            ArtifactCleanup.objects.filter(pk=cleanup.pk).update(
                attempts=attempts,
                last_error=_reason(exc)[1][:2000],
                next_attempt_at=timezone.now() + _backoff(attempts),
            )
            logger.warning("signature artifact removal failed (will retry): %s", _reason(exc)[1])
            continue
        ArtifactCleanup.objects.filter(pk=cleanup.pk).delete()
        logger.info(
            "signature artifact %s %s@%s (%s)",
            outcome,
            cleanup.repository,
            cleanup.manifest_digest,
            cleanup.reason,
        )
        done += 1
    return done, failed


# --- registry hooks -----------------------------------------------------------------------


def on_manifests_pushed(*, instance: Instance, manifests, tags, source: str) -> None:
    """REGISTRY_PUSH_HANDLERS entry: pending signatures for pushes into signed namespaces.

    Runs inside the transaction that records the push, so the pending rows commit with
    it; the signing itself starts after commit, off the webhook's request path. Images
    imported by ``sync_registry`` are existing images: they are signed on demand only.
    """
    if source != "webhook":
        return
    by_id = {manifest.pk: manifest for manifest in manifests}
    for tag in tags:
        by_id.setdefault(tag.manifest_id, tag.manifest)
    # An index's children are not taken from the event's references: the worker signs
    # them once it has fetched the index itself from the registry (_pending_children).
    if not by_id:
        return
    namespace_ids = {m.repository.namespace_id for m in by_id.values()}
    policies = {
        p.namespace_id: p
        for p in SigningPolicy.objects.filter(namespace_id__in=namespace_ids, disabled=False)
    }
    wanted = [
        (policies[m.repository.namespace_id], m)
        for m in by_id.values()
        if m.repository.namespace_id in policies
    ]
    if not wanted:
        return
    ids = _ensure_pending(wanted, trigger=Trigger.PUSH, actor=None)
    if ids:
        from signing.dispatch import dispatch

        transaction.on_commit(lambda: dispatch(sign_signatures, ids))


def on_manifests_deleted(*, instance: Instance, manifests, source: str) -> None:
    """REGISTRY_DELETE_HANDLERS entry: an image deleted takes its signatures with it."""
    # By id through a subquery-free IN of modest size: a namespace delete can pass many.
    manifest_ids = [manifest.pk for manifest in manifests]
    if len(manifest_ids) > 5000:
        namespace_ids = {manifest.repository.namespace_id for manifest in manifests}
        signatures = Signature.objects.filter(manifest__repository__namespace_id__in=namespace_ids)
    else:
        signatures = Signature.objects.filter(manifest_id__in=manifest_ids)
    if source == "webhook":
        rows = signatures.values_list("manifest__repository__name", "manifest__digest").distinct()
        # The image is gone: its whole .sig artifact goes too (fingerprint "").
        ids = _queue_cleanups(instance, ((r, d, "") for r, d in rows), CleanupReason.IMAGE_DELETED)
    else:
        # Only Signet's records go (namespace deleted); the images stay in the registry, and
        # so do the signatures other keys made: remove only the layers Signet published.
        published = (
            signatures.exclude(sig_manifest_digest="")
            .values_list("manifest__repository__name", "manifest__digest", "key_fingerprint")
            .distinct()
        )
        ids = _queue_cleanups(instance, published, CleanupReason.POLICY_DELETED)
    _after_commit_cleanups(ids)


# --- signing ---------------------------------------------------------------------------------


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


def _ensure_pending(
    pairs: Iterable[tuple[SigningPolicy, Manifest]], *, trigger: str, actor
) -> list[int]:
    """Signature rows for each (policy, manifest) that the policy's key has not signed.

    Missing rows are created pending; existing rows keep their status (a signature made
    with an old key stays valid and visible until the re-sign succeeds). One row per
    (policy, manifest), settled by the unique constraint. Returns the rows to sign.
    """
    pairs = list(pairs)
    if not pairs:
        return []
    Signature.objects.bulk_create(
        [
            Signature(policy=policy, manifest=manifest, trigger=trigger, triggered_by=actor)
            for policy, manifest in pairs
        ],
        ignore_conflicts=True,
        batch_size=500,
    )
    by_policy: dict[int, list[int]] = {}
    for policy, manifest in pairs:
        by_policy.setdefault(policy.pk, []).append(manifest.pk)
    ids: list[int] = []
    for policy_id, manifest_ids in by_policy.items():
        for start in range(0, len(manifest_ids), 500):
            needing = Signature.objects.filter(
                needs_signing(),
                policy_id=policy_id,
                manifest_id__in=manifest_ids[start : start + 500],
            )
            chunk_ids = list(needing.values_list("id", flat=True))
            if chunk_ids:
                Signature.objects.filter(pk__in=chunk_ids).update(
                    trigger=trigger, triggered_by=actor, next_attempt_at=None
                )
                if trigger != Trigger.PUSH:
                    # A person asking again earns a row given up its tries again; a push
                    # event for the same row does not (it gets the one try it triggers),
                    # so repeated forged pushes cost one fetch each, never a new series.
                    Signature.objects.filter(given_up(), pk__in=chunk_ids).update(attempts=0)
            ids.extend(chunk_ids)
    return ids


def _backoff(attempts: int) -> timedelta:
    base = settings.SIGNING_RETRY_BASE_SECONDS
    return timedelta(
        seconds=min(base * 2 ** max(attempts - 1, 0), settings.SIGNING_RETRY_MAX_SECONDS)
    )


def _reason(exc: Exception) -> tuple[str, str]:
    if isinstance(exc, DomainError):
        return exc.code, exc.message
    return "InternalError", f"{type(exc).__name__}: {exc}"


def _claim(signature_id: int) -> Signature | None:
    """Take a row for signing; None when it is signed already or another worker has it."""
    now = timezone.now()
    current = (
        Signature.objects.filter(pk=signature_id)
        .values_list("policy__key_id", "policy__domain", "manifest__repository__name")
        .first()
    )
    if current is None:
        return None
    policy_key_id, domain, repository = current
    # Conditions on this table only: PostgreSQL re-checks them on the row version it waited
    # for. With needs_signing()'s join the UPDATE becomes "id IN (subquery)", re-checked
    # against the old snapshot, and concurrent workers all claimed (and signed) one row.
    claimed = (
        Signature.objects.filter(pk=signature_id)
        .filter(
            ~Q(status=SignatureStatus.SIGNED)
            | ~Q(key_id=policy_key_id)
            | ~Q(docker_reference=f"{domain}/{repository}")
        )
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .update(claimed_until=now + timedelta(seconds=CLAIM_SECONDS), attempts=F("attempts") + 1)
    )
    if not claimed:
        return None
    return Signature.objects.select_related(
        "policy__key", "policy__namespace__instance", "manifest__repository"
    ).get(pk=signature_id)


@dataclass
class SignOutcome:
    signed: int = 0
    failed: int = 0
    skipped: int = 0
    failures: list[str] = field(default_factory=list)

    def add(self, other: SignOutcome) -> None:
        self.signed += other.signed
        self.failed += other.failed
        self.skipped += other.skipped
        self.failures.extend(other.failures)


def sign_signature(signature_id: int, *, kms_client=None, registry_clients=None) -> str:
    """Sign one row: verify the image in the registry, payload, KMS signature, ``.sig``
    artifact. Returns the row's status; an index's children are signed after it.

    Never raises for KMS or registry failures: the row ends ``failed`` (or, when a re-sign
    fails, stays ``signed`` with the old key) with the reason and a next attempt time.
    """
    status, children = _sign_one(
        signature_id, kms_client=kms_client, registry_clients=registry_clients
    )
    if children:
        from signing.dispatch import dispatch

        dispatch(sign_signatures, children)
    return status


def _verified_subject(signature: Signature, registry) -> Subject:
    """The row's image as the registry holds it; Signet's record corrected to match."""
    manifest = signature.manifest
    subject = fetch_subject(registry, manifest.repository.name, manifest.digest)
    reconcile_manifest(
        manifest=manifest,
        media_type=subject.media_type,
        size=subject.size,
        children=subject.children,
    )
    return subject


def _pending_children(signature: Signature) -> list[int]:
    """Rows for the children of the (just verified) index, as the registry listed them."""
    children = manifests_with_children([signature.manifest])
    pairs = [(signature.policy, c) for c in children if c.pk != signature.manifest_id]
    if not pairs:
        return []
    with transaction.atomic():
        return _ensure_pending(pairs, trigger=signature.trigger, actor=signature.triggered_by)


def _sign_one(signature_id: int, *, kms_client=None, registry_clients=None):
    """``sign_signature`` without dispatching: (status, ids of the index's children to sign)."""
    signature = _claim(signature_id)
    if signature is None:
        return "skipped", []
    policy, manifest = signature.policy, signature.manifest
    key = policy.key
    repository = manifest.repository.name
    previous_fingerprint = signature.key_fingerprint
    children: list[int] = []
    try:
        instance = policy.namespace.instance
        registry = (registry_clients or {}).get(instance.pk) or instance.registry_client()
        if registry_clients is not None:
            registry_clients[instance.pk] = registry
        # The registry is the truth: never sign a digest only an event or request names.
        subject = _verified_subject(signature, registry)
        if subject.is_index:
            children = _pending_children(signature)
        reference = f"{policy.domain}/{repository}"
        payload = build_payload(docker_reference=reference, manifest_digest=manifest.digest)
        client = kms_client or get_kms_client(service=SERVICE)
        raw_signature = client.sign(
            key_id=str(key.key_id), message=payload, algorithm=SIGNING_ALGORITHM
        )
        signature_b64 = base64.b64encode(raw_signature).decode()
        layer = SignatureLayer(
            payload=payload,
            signature_b64=signature_b64,
            annotations=signing_annotations(key_fingerprint=key.public_key_fingerprint),
        )
        drop = [previous_fingerprint] if previous_fingerprint else []
        sig_digest = artifacts.publish(
            registry, repository, manifest.digest, layer, drop_fingerprints=drop
        )
    except Exception as exc:
        return _record_failure(signature, exc), children
    now = timezone.now()
    updated = Signature.objects.filter(pk=signature.pk).update(
        status=SignatureStatus.SIGNED,
        key_id=key.key_id,
        key_fingerprint=key.public_key_fingerprint,
        algorithm=SIGNING_ALGORITHM,
        docker_reference=reference,
        payload=payload,
        signature_value=signature_b64,
        sig_manifest_digest=sig_digest,
        signed_at=now,
        failure_code="",
        failure_reason="",
        next_attempt_at=None,
        claimed_until=None,
        updated_at=now,
    )
    if not updated:
        # The policy or image was deleted while we signed: take the artifact back out.
        _after_commit_cleanups(
            _queue_cleanups(
                policy.namespace.instance,
                [(repository, manifest.digest, key.public_key_fingerprint)],
                CleanupReason.POLICY_DELETED,
            )
        )
        return "skipped", children
    # A removal still queued for this artifact (a deleted policy or image) would take the
    # signature just published back out.
    ArtifactCleanup.objects.filter(
        instance_id=policy.namespace.instance_id,
        repository=repository,
        manifest_digest=manifest.digest,
        key_fingerprint__in=[key.public_key_fingerprint, ""],
    ).delete()
    logger.info("image signed %s@%s key=%s", repository, manifest.digest, key.alias)
    return SignatureStatus.SIGNED, children


def given_up() -> Q:
    """Rows no longer retried on their own: the registry kept answering that it does not
    hold (or cannot prove) the image. They stay failed and visible until a person asks
    again (retry, sign: the tries start over); a new push gets the one try it triggers."""
    return Q(
        failure_code__in=UNVERIFIED_CODES,
        attempts__gte=settings.SIGNING_MANIFEST_CHECK_ATTEMPTS,
    )


def _record_failure(signature: Signature, exc: Exception) -> str:
    code, message = _reason(exc)
    now = timezone.now()
    status = (
        SignatureStatus.SIGNED
        if signature.status == SignatureStatus.SIGNED
        else SignatureStatus.FAILED
    )
    # A registry that is still writing may answer 404 for a moment: a few tries, not forever.
    exhausted = (
        code in UNVERIFIED_CODES and signature.attempts >= settings.SIGNING_MANIFEST_CHECK_ATTEMPTS
    )
    Signature.objects.filter(pk=signature.pk).update(
        status=status,
        failure_code=code,
        failure_reason=message[:2000],
        next_attempt_at=None if exhausted else now + _backoff(signature.attempts),
        claimed_until=None,
        updated_at=now,
    )
    audit.record(
        "signing.signature.failed",
        obj=signature,
        object_repr=f"{signature.manifest.repository.name}@{signature.manifest.digest}",
        instance=signature.policy.namespace.instance,
        namespace_name=signature.policy.namespace.name,
        details={
            "code": code,
            "reason": message[:500],
            "policy": signature.policy.name,
            "key_alias": signature.policy.key.alias,
            "trigger": signature.trigger,
            "attempts": signature.attempts,
        },
    )
    logger.warning(
        "image signing failed %s@%s: %s %s",
        signature.manifest.repository.name,
        signature.manifest.digest,
        code,
        message,
    )
    return SignatureStatus.FAILED


def sign_signatures(ids: Sequence[int]) -> SignOutcome:
    """Sign the rows, then the children of any index among them (as the registry lists
    them), in this same pass."""
    outcome = SignOutcome()
    clients: dict[int, Any] = {}
    kms_client = get_kms_client(service=SERVICE)
    queue, seen = deque(ids), set(ids)
    while queue:
        signature_id = queue.popleft()
        try:
            status, children = _sign_one(
                signature_id, kms_client=kms_client, registry_clients=clients
            )
            queue.extend(child for child in children if child not in seen)
            seen.update(children)
        except DatabaseError:
            # The row stays claimed until its lease ends; retry_signatures takes it again.
            logger.exception("recording signature %s failed; it will be retried", signature_id)
            outcome.failed += 1
            continue
        if status == SignatureStatus.SIGNED:
            outcome.signed += 1
        elif status == SignatureStatus.FAILED:
            outcome.failed += 1
            row = (
                Signature.objects.filter(pk=signature_id)
                .values_list("manifest__repository__name", "manifest__digest", "failure_reason")
                .first()
            )
            if row:
                outcome.failures.append(f"{row[0]}@{row[1]}: {row[2]}")
        else:
            outcome.skipped += 1
    return outcome


# --- on-demand signing --------------------------------------------------------------------


@dataclass
class SignRequestResult:
    requested: int = 0
    already_signed: int = 0
    queued: int = 0
    no_policy: int = 0
    outcome: SignOutcome = field(default_factory=SignOutcome)
    signature_ids: list[int] = field(default_factory=list)


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


def _only_namespace(namespaces: Iterable[tuple[str, str]]) -> str:
    """The namespace name when every ``(instance name, namespace name)`` is the same one,
    else "" (an event about several namespaces is for whole-instance memberships only)."""
    distinct = set(namespaces)
    return next(iter(distinct))[1] if len(distinct) == 1 else ""


def _audit_sign_request(result, manifests, policies, *, trigger: str, actor) -> None:
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
        },
    )


def _audit_retry(ids: Sequence[int], outcome: SignOutcome, *, trigger: str) -> None:
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
        },
    )


def request_signing(
    *,
    manifests: Iterable[Manifest],
    trigger: str = Trigger.MANUAL,
    actor=None,
    synchronous_limit: int | None = None,
) -> SignRequestResult:
    """Sign existing images on demand (row button, bulk action, API, backfill).

    Up to ``synchronous_limit`` rows (default ``SIGNING_SYNC_LIMIT``) are signed before
    returning; beyond that the rest is handed to the background dispatcher.
    """
    limit = settings.SIGNING_SYNC_LIMIT if synchronous_limit is None else synchronous_limit
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
        ids = _ensure_pending(pairs, trigger=trigger, actor=actor)
    result.already_signed = len(pairs) - len(ids)
    result.signature_ids = ids
    now_ids, later_ids = ids[:limit], ids[limit:]
    result.outcome = sign_signatures(now_ids)
    if later_ids:
        from signing.dispatch import dispatch

        dispatch(sign_signatures, later_ids)
        result.queued = len(later_ids)
    _audit_sign_request(result, manifests, policies, trigger=trigger, actor=actor)
    return result


def resign_policy(*, policy: SigningPolicy, actor=None) -> SignRequestResult:
    """Re-sign everything the policy's earlier key(s) signed, with its current key."""
    manifests = Manifest.objects.filter(
        pk__in=resign_candidates(policy).values("manifest_id")
    ).select_related("repository")
    return request_signing(manifests=list(manifests), trigger=Trigger.RESIGN, actor=actor)


def retry_signatures(*, now=None, limit: int | None = None) -> SignOutcome:
    """Retry what failed (its backoff elapsed), pending rows nobody finished, and cleanups."""
    now = now or timezone.now()
    stale = now - timedelta(seconds=CLAIM_SECONDS)
    due = (
        Signature.objects.filter(needs_signing())
        .exclude(given_up())
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .filter(
            # Backoff elapsed (failed rows, failed re-signs), or work handed off and never
            # finished (a restart, a killed request): nothing that needs signing is left out.
            Q(next_attempt_at__lte=now)
            | Q(next_attempt_at__isnull=True, updated_at__lte=stale)
            | Q(claimed_until__lt=now)
        )
        .order_by("next_attempt_at", "id")
        .values_list("id", flat=True)
    )
    ids = list(due[:limit] if limit else due)
    outcome = sign_signatures(ids)
    run_cleanups(now=now)
    if ids:
        _audit_retry(ids, outcome, trigger="scheduled-retry")
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
        from signing.dispatch import dispatch

        dispatch(sign_signatures, ids[limit:])
    if ids:
        _audit_retry(ids, outcome, trigger="retry")
    return outcome


# --- scopes ---------------------------------------------------------------------------------


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
