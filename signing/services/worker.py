"""The signing worker: claim a row, verify the image, sign with the KMS, publish the
``.sig`` artifact, record the result or the failure. Work handed on after commit goes
through ``after_commit``."""

from __future__ import annotations

import base64
import logging
import operator
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import reduce
from typing import Any

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Q
from django.utils import timezone

from audit import services as audit
from kms.clients import get_kms_client
from registry.models import Manifest
from registry.reconcile import reconcile_manifest
from registry.worker_clients import worker_client
from signing import artifacts
from signing.constants import SERVICE, SIGNING_ALGORITHM, UNVERIFIED_CODES
from signing.dispatch import dispatch
from signing.metrics import signature_failed, signature_signed
from signing.models import (
    ArtifactCleanup,
    CleanupReason,
    Signature,
    SignatureStatus,
    SigningPolicy,
    Trigger,
)
from signing.payload import SignatureLayer, build_payload, signing_annotations
from signing.selectors import given_up, manifests_with_children, needs_signing
from signing.services.batches import CLAIM_PAGE, claim_page, store_signed
from signing.services.cleanups import queue_cleanups, run_cleanups
from signing.services.failures import backoff, failure_reason
from signing.subjects import Subject, fetch_subject

logger = logging.getLogger(__name__)


def after_commit(work: Callable[[list[int]], Any], ids: Sequence[int]) -> None:
    """Hand ``work(ids)`` to the dispatcher once the caller's transaction commits: the
    background thread must see the rows it starts from. Nothing to do, nothing queued."""
    if ids:
        ids = list(ids)
        transaction.on_commit(lambda: dispatch(work, ids))


def remove_artifacts_after_commit(ids: Sequence[int]) -> None:
    """Carry out the queued artifact removals ``ids`` once the caller's transaction commits."""
    after_commit(run_cleanups, ids)


def ensure_pending(
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


def _claim(signature_id: int) -> Signature | None:
    """Take a row for signing; None when it is signed already or another worker has it."""
    claimed = claim_page([signature_id])
    return claimed[0] if claimed else None


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
        return ensure_pending(pairs, trigger=signature.trigger, actor=signature.triggered_by)


@dataclass(frozen=True)
class _Published:
    """What signing one row produced: the signed payload and the ``.sig`` manifest."""

    reference: str
    payload: bytes
    signature_b64: str
    sig_digest: str


def _sign_one(
    signature_id: int, *, kms_client: Any = None, registry_clients: dict[int, Any] | None = None
) -> tuple[str, list[int]]:
    """``sign_signature`` without dispatching: (status, ids of the index's children to sign)."""
    signature, result, children = _sign_unrecorded(
        signature_id, kms_client=kms_client, registry_clients=registry_clients
    )
    if signature is not None and isinstance(result, _Published):
        return _record_signed_rows([(signature, result)])[0], children
    return str(result), children


def _sign_unrecorded(
    signature_id: int, *, kms_client: Any, registry_clients: dict[int, Any] | None
) -> tuple[Signature | None, _Published | str, list[int]]:
    """Claim, verify, sign and publish one row; a failure is recorded here, a success is
    left for the caller to record (rows are recorded many at a time). Answers the row,
    its ``.sig`` (or its status: skipped, failed) and the ids of an index's children."""
    signature = _claim(signature_id)
    if signature is None:
        return None, "skipped", []
    result, children = _sign_claimed(
        signature, kms_client=kms_client, registry_clients=registry_clients
    )
    return signature, result, children


def _sign_claimed(
    signature: Signature, *, kms_client: Any, registry_clients: dict[int, Any] | None
) -> tuple[_Published | str, list[int]]:
    """Verify, sign and publish a claimed row; a failure is recorded here. Answers the
    ``.sig`` (or the status: failed) and the ids of an index's children."""
    children: list[int] = []
    try:
        registry = _registry_client(signature, registry_clients)
        # The registry is the truth: never sign a digest only an event or request names.
        subject = _verified_subject(signature, registry)
        if subject.is_index:
            children = _pending_children(signature)
        published = _sign_and_publish(signature, registry, kms_client)
    except Exception as exc:
        return _record_failure(signature, exc), children
    return published, children


def _registry_client(signature: Signature, registry_clients: dict[int, Any] | None) -> Any:
    """The instance's registry client: the one ``registry_clients`` holds, else this
    thread's kept client (one keep-alive session and token cache across images)."""
    instance = signature.policy.namespace.instance
    registry = (registry_clients or {}).get(instance.pk) or worker_client(instance)
    if registry_clients is not None:
        registry_clients[instance.pk] = registry
    return registry


def _sign_and_publish(signature: Signature, registry: Any, kms_client: Any) -> _Published:
    """Sign the payload with the policy's KMS key; publish it in the ``.sig`` artifact,
    replacing the layer of the key that signed the row before (a re-sign)."""
    policy, manifest = signature.policy, signature.manifest
    key = policy.key
    repository = manifest.repository.name
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
    drop = [signature.key_fingerprint] if signature.key_fingerprint else []
    sig_digest = artifacts.publish(
        registry, repository, manifest.digest, layer, drop_fingerprints=drop
    )
    return _Published(reference, payload, signature_b64, sig_digest)


def _mark_signed(signature: Signature, published: _Published, now) -> None:
    key = signature.policy.key
    signature.status = SignatureStatus.SIGNED
    signature.key_id = key.key_id
    signature.key_fingerprint = key.public_key_fingerprint
    signature.algorithm = SIGNING_ALGORITHM
    signature.docker_reference = published.reference
    signature.payload = published.payload
    signature.signature_value = published.signature_b64
    signature.sig_manifest_digest = published.sig_digest
    signature.signed_at = now
    signature.failure_code = ""
    signature.failure_reason = ""
    signature.next_attempt_at = None
    signature.claimed_until = None
    signature.claimed_by = None
    signature.updated_at = now


def _artifact_of(signature: Signature) -> Q:
    manifest = signature.manifest
    return Q(
        instance_id=signature.policy.namespace.instance_id,
        repository=manifest.repository.name,
        manifest_digest=manifest.digest,
        key_fingerprint__in=[signature.policy.key.public_key_fingerprint, ""],
    )


def _record_signed_rows(done: Sequence[tuple[Signature, _Published]]) -> list[str]:
    """Store the signatures on their rows, in one transaction (an UPDATE for all of them);
    a row that went meanwhile gets its artifact taken back. The status of each row."""
    now = timezone.now()
    rows = [signature for signature, _ in done]
    for signature, published in done:
        _mark_signed(signature, published, now)
    with transaction.atomic():
        updated = store_signed(rows, now)
        present = (
            {signature.pk for signature in rows}
            if updated == len(rows)
            else set(
                Signature.objects.filter(pk__in=[s.pk for s in rows]).values_list("pk", flat=True)
            )
        )
        for signature in rows:
            if signature.pk not in present:
                _take_back(signature)
        # A removal still queued for an artifact just published (a deleted policy or
        # image) would take the signature back out.
        kept = [signature for signature in rows if signature.pk in present]
        if kept:
            ArtifactCleanup.objects.filter(
                reduce(operator.or_, (_artifact_of(signature) for signature in kept))
            ).delete()
    for signature in kept:
        logger.info(
            "image signed %s@%s key=%s",
            signature.manifest.repository.name,
            signature.manifest.digest,
            signature.policy.key.alias,
        )
        signature_signed(signature)
    return [SignatureStatus.SIGNED if s.pk in present else "skipped" for s in rows]


def _take_back(signature: Signature) -> None:
    """The policy or image was deleted while we signed: take the artifact back out."""
    policy, manifest = signature.policy, signature.manifest
    remove_artifacts_after_commit(
        queue_cleanups(
            policy.namespace.instance,
            [(manifest.repository.name, manifest.digest, policy.key.public_key_fingerprint)],
            CleanupReason.POLICY_DELETED,
        )
    )


def _record_failure(signature: Signature, exc: Exception) -> str:
    code, message = failure_reason(exc)
    signature_failed(code)
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
        next_attempt_at=None if exhausted else now + backoff(signature.attempts),
        claimed_until=None,
        claimed_by=None,
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


class _Unrecorded:
    """Signed and published rows waiting to be recorded: a few dozen at a time, or what
    a second has signed, in one transaction (the rows stay claimed until then)."""

    ROWS = 50
    SECONDS = 1.0

    def __init__(self, outcome: SignOutcome) -> None:
        self.outcome = outcome
        self.rows: list[tuple[Signature, _Published]] = []
        self.since = 0.0

    def add(self, signature: Signature, published: _Published) -> None:
        if not self.rows:
            self.since = time.monotonic()
        self.rows.append((signature, published))
        if len(self.rows) >= self.ROWS or time.monotonic() - self.since >= self.SECONDS:
            self.flush()

    def flush(self) -> None:
        rows, self.rows = self.rows, []
        if not rows:
            return
        try:
            statuses = _record_signed_rows(rows)
        except DatabaseError:
            # The rows stay claimed until their lease ends; retry_signatures takes them again.
            logger.exception("recording %d signatures failed; they will be retried", len(rows))
            self.outcome.failed += len(rows)
            return
        for (signature, _), status in zip(rows, statuses, strict=True):
            _count(self.outcome, status, signature.pk)


def _count(outcome: SignOutcome, status: str, signature_id: int) -> None:
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


def sign_signatures(ids: Sequence[int]) -> SignOutcome:
    """Sign the rows, then the children of any index among them (as the registry lists
    them), in this same pass. Rows are claimed a page at a time (``_claim_page``), signed
    with one KMS signing batch (the key and the grant read once a second, not per row)
    and recorded many at a time (``_Unrecorded``)."""
    outcome = SignOutcome()
    clients: dict[int, Any] = {}
    signer = get_kms_client(service=SERVICE).signing_batch()
    unrecorded = _Unrecorded(outcome)
    queue, seen = deque(ids), set(ids)
    while queue:
        page = [queue.popleft() for _ in range(min(CLAIM_PAGE, len(queue)))]
        try:
            claimed = claim_page(page)
        except DatabaseError:
            # Nothing was claimed: the rows stay as they were; retry_signatures takes them.
            logger.exception("claiming signatures %s failed; they will be retried", page)
            outcome.failed += len(page)
            continue
        outcome.skipped += len(page) - len(claimed)
        for signature in claimed:
            try:
                result, children = _sign_claimed(
                    signature, kms_client=signer, registry_clients=clients
                )
            except DatabaseError:
                # The row stays claimed until its lease ends; retry_signatures takes it again.
                logger.exception("recording signature %s failed; it will be retried", signature.pk)
                outcome.failed += 1
                continue
            queue.extend(child for child in children if child not in seen)
            seen.update(children)
            if isinstance(result, _Published):
                unrecorded.add(signature, result)
            else:
                _count(outcome, result, signature.pk)
    unrecorded.flush()
    return outcome
