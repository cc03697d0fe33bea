"""Signing policies: validate, create, change, delete; the KMS key-deletion guard."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.db import IntegrityError, transaction

from audit import services as audit
from kms import services as kms_services
from kms.errors import KeyInUse, KeyNotFound
from kms.models import Key, KeyState, KeyUsage
from registry.models import Namespace
from signing.constants import SERVICE
from signing.errors import InvalidPolicy, KeyNotSuitable, PolicyExists
from signing.models import CleanupReason, Signature, SigningPolicy
from signing.naming import policy_name_problem
from signing.selectors import resign_candidates
from signing.services.cleanups import queue_cleanups
from signing.services.worker import remove_artifacts_after_commit

logger = logging.getLogger(__name__)


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
        cleanup_ids = queue_cleanups(instance, published, CleanupReason.POLICY_DELETED)
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
    remove_artifacts_after_commit(cleanup_ids)
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
