"""KMS operations. Admin, API, commands and clients all call these functions."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from functools import cache

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError, QuerySet
from django.utils import timezone
from django.utils.module_loading import import_string

from audit import services as audit
from kms import crypto
from kms.errors import (
    AliasAlreadyExists,
    CmkDisabled,
    CmkShouldBeDisabled,
    CmkStateNotSupport,
    InvalidKeyUsage,
    InvalidParameter,
    KeyInUse,
    KeyNotFound,
    KeyPendingDelete,
    MasterKeyError,
    ServiceNotAuthorized,
)
from kms.filtersets import KeyFilterSet
from kms.keycache import PrivateKeyCache
from kms.models import (
    KEY_SPEC_BY_USAGE,
    AuthorizedService,
    Key,
    KeyState,
    KeyUsage,
    ServiceAuthorization,
)

logger = logging.getLogger(__name__)

MIN_PENDING_WINDOW_DAYS = 7
MAX_PENDING_WINDOW_DAYS = 30
MAX_DESCRIPTION_BYTES = 1024
RESERVED_ALIAS_PREFIX = "kms-"

key_cache = PrivateKeyCache(getattr(settings, "KMS_KEY_CACHE_SIZE", 256))


@dataclass(frozen=True)
class PublicKeyInfo:
    key_id: str
    key_usage: str
    public_key_pem: str
    public_key_der_b64: str
    fingerprint: str


@cache
def _keyring_for(text: str) -> crypto.MasterKeyring:
    return crypto.MasterKeyring.parse(text)


def master_keyring() -> crypto.MasterKeyring:
    try:
        return _keyring_for(settings.KMS_MASTER_KEY)
    except crypto.MasterKeyringError as exc:
        raise MasterKeyError(f"KMS_MASTER_KEY is unusable: {exc}") from None


# --- reading ----------------------------------------------------------------


def _key_queryset() -> QuerySet[Key]:
    # The sealed material is only loaded where a private key is really needed.
    return Key.objects.defer("sealed_private_key")


def get_key(*, key_id: str, for_update: bool = False) -> Key:
    queryset = Key.objects.select_for_update() if for_update else _key_queryset()
    try:
        return queryset.get(key_id=key_id)
    except (Key.DoesNotExist, ValidationError, ValueError):
        raise KeyNotFound(f"No key with KeyId {key_id!s} exists.", key_id=str(key_id)) from None


def describe_key(*, key_id: str) -> Key:
    return get_key(key_id=key_id)


def list_keys(
    *,
    key_usage: str | None = None,
    key_state: str | None = None,
    region: str | None = None,
    search_alias: str | None = None,
) -> QuerySet[Key]:
    """ListKeys, newest first; a usage, state or region not among its choices is
    ``InvalidParameter``. The API applies the same ``KeyFilterSet`` to its query."""
    filters = {
        "key_usage": key_usage,
        "key_state": key_state,
        "region": region,
        "search_alias": search_alias,
    }
    queryset = _key_queryset().order_by("-created_at", "key_id")
    return KeyFilterSet(filters, queryset=queryset).filtered()


def get_public_key(*, key_id: str) -> PublicKeyInfo:
    key = get_key(key_id=key_id)
    _require_enabled(key)
    der = crypto.public_key_der(key.public_key_pem)
    return PublicKeyInfo(
        key_id=str(key.key_id),
        key_usage=key.key_usage,
        public_key_pem=key.public_key_pem,
        public_key_der_b64=base64.b64encode(der).decode(),
        fingerprint=key.public_key_fingerprint,
    )


# --- creating ---------------------------------------------------------------


def validate_key_fields(*, alias: str, description: str, region: str, key_usage: str) -> None:
    """The same rules for the admin form, the API and the service."""
    errors: dict[str, list[str]] = {}
    try:
        Key._meta.get_field("alias").run_validators(alias)
    except ValidationError as exc:
        errors["alias"] = list(exc.messages)
    if not alias:
        errors["alias"] = ["Alias is required."]
    elif alias.lower().startswith(RESERVED_ALIAS_PREFIX):
        errors["alias"] = [f"The alias prefix {RESERVED_ALIAS_PREFIX!r} is reserved."]
    if problem := _description_problem(description):
        errors["description"] = [problem]
    if region not in settings.KMS_REGIONS:
        errors["region"] = [
            f"Unknown region {region!r}; choose one of {', '.join(settings.KMS_REGIONS)}."
        ]
    if key_usage not in KeyUsage.values:
        errors["key_usage"] = [
            f"Unknown key usage {key_usage!r}; choose one of {', '.join(KeyUsage.values)}."
        ]
    if errors:
        field, messages = next(iter(errors.items()))
        raise InvalidParameter(f"Invalid {field}: {messages[0]}", fields=errors)


def create_key(
    *,
    alias: str,
    description: str = "",
    region: str | None = None,
    key_usage: str = KeyUsage.RSA_2048,
    created_by=None,
) -> Key:
    region = region or settings.KMS_DEFAULT_REGION
    validate_key_fields(alias=alias, description=description, region=region, key_usage=key_usage)
    if Key.objects.filter(alias__iexact=alias).exists():
        raise AliasAlreadyExists(f"A key with alias {alias!r} already exists.", alias=alias)
    key_spec = KEY_SPEC_BY_USAGE[KeyUsage(key_usage)]
    private_key = crypto.generate_private_key(key_spec)
    public_pem = crypto.public_key_pem(private_key)
    key = Key(
        alias=alias,
        description=description,
        region=region,
        key_usage=key_usage,
        key_spec=key_spec,
        public_key_pem=public_pem,
        public_key_fingerprint=crypto.fingerprint(public_pem),
        created_by=created_by,
    )
    sealed, version = crypto.seal(
        crypto.private_key_to_der(private_key), keyring=master_keyring(), key_id=str(key.key_id)
    )
    key.sealed_private_key = sealed
    key.master_key_version = version
    try:
        with transaction.atomic():
            key.save(force_insert=True)
            audit.record(
                "kms.key.created",
                obj=key,
                actor=created_by,
                details={"alias": alias, "key_usage": key_usage, "region": region},
            )
    except IntegrityError:
        # Two concurrent creates with one alias: the unique constraint decides.
        raise AliasAlreadyExists(
            f"A key with alias {alias!r} already exists.", alias=alias
        ) from None
    logger.info("kms key created key_id=%s alias=%s usage=%s", key.key_id, alias, key_usage)
    return key


def _description_problem(description: str) -> str | None:
    size = len(description.encode())
    if size > MAX_DESCRIPTION_BYTES:
        return f"Description must be at most {MAX_DESCRIPTION_BYTES} bytes (it is {size})."
    return None


def update_key_description(*, key_id: str, description: str) -> Key:
    if problem := _description_problem(description):
        raise InvalidParameter(problem, fields={"description": [problem]})
    with transaction.atomic():
        key = get_key(key_id=key_id, for_update=True)
        key.description = description
        key.save(update_fields=["description", "updated_at"])
    return key


# --- state ------------------------------------------------------------------


def _require_enabled(key: Key) -> None:
    if key.state == KeyState.DISABLED:
        raise CmkDisabled(
            f"Key {key.alias} ({key.key_id}) is disabled; enable it before using it.",
            key_id=str(key.key_id),
        )
    if key.state == KeyState.PENDING_DELETE:
        raise KeyPendingDelete(
            f"Key {key.alias} ({key.key_id}) is pending deletion on "
            f"{key.deletion_date:%Y-%m-%d}; cancel the deletion and enable it to use it.",
            key_id=str(key.key_id),
        )


_AUDIT_STATE_ACTIONS: dict[tuple[str, str], str] = {
    (KeyState.DISABLED, KeyState.PENDING_DELETE): "kms.key.deletion_scheduled",
    (KeyState.PENDING_DELETE, KeyState.DISABLED): "kms.key.deletion_cancelled",
}


def _transition(
    key_id: str, *, allowed_from: Iterable[str], to: str, guards: Iterable = (), **fields
) -> Key:
    with transaction.atomic():
        key = get_key(key_id=key_id, for_update=True)
        if key.state not in allowed_from:
            if key.state == KeyState.PENDING_DELETE:
                raise KeyPendingDelete(
                    f"Key {key.alias} is pending deletion; cancel the deletion first.",
                    key_id=str(key.key_id),
                )
            raise CmkStateNotSupport(
                f"Key {key.alias} is {key.state}; this operation needs it to be "
                f"{' or '.join(allowed_from)}.",
                key_id=str(key.key_id),
                state=key.state,
            )
        # Guards run under the key's row lock: a policy created meanwhile (which locks the
        # key too) is either seen here or sees the new state itself.
        for guard in guards:
            guard(key)
        before = {"state": key.state, **{name: getattr(key, name) for name in fields}}
        key.state = to
        for name, value in fields.items():
            setattr(key, name, value)
        key.save(update_fields=["state", "updated_at", *fields])
        audit.record(
            _AUDIT_STATE_ACTIONS.get((before["state"], to), "kms.key.state_changed"),
            obj=key,
            changes=audit.diff(before, {"state": to, **fields}),
        )
    key_cache.evict(str(key.key_id))
    logger.info("kms key state changed key_id=%s state=%s", key.key_id, to)
    return key


def enable_key(*, key_id: str) -> Key:
    key = get_key(key_id=key_id)
    if key.state == KeyState.ENABLED:
        return key
    return _transition(key_id, allowed_from=[KeyState.DISABLED], to=KeyState.ENABLED)


def disable_key(*, key_id: str) -> Key:
    key = get_key(key_id=key_id)
    if key.state == KeyState.DISABLED:
        return key
    return _transition(key_id, allowed_from=[KeyState.ENABLED], to=KeyState.DISABLED)


def _deletion_guards() -> list:
    return [import_string(path) for path in settings.KMS_KEY_DELETION_GUARDS]


def schedule_key_deletion(*, key_id: str, pending_window_in_days: int) -> Key:
    if (
        isinstance(pending_window_in_days, bool)
        or not isinstance(pending_window_in_days, int)
        or not MIN_PENDING_WINDOW_DAYS <= pending_window_in_days <= MAX_PENDING_WINDOW_DAYS
    ):
        raise InvalidParameter(
            f"PendingWindowInDays must be a whole number from {MIN_PENDING_WINDOW_DAYS} to "
            f"{MAX_PENDING_WINDOW_DAYS}.",
            fields={
                "pending_window_in_days": [
                    f"Must be from {MIN_PENDING_WINDOW_DAYS} to {MAX_PENDING_WINDOW_DAYS} days."
                ]
            },
        )
    key = get_key(key_id=key_id)
    if key.state == KeyState.PENDING_DELETE:
        raise KeyPendingDelete(
            f"Key {key.alias} is already pending deletion on {key.deletion_date:%Y-%m-%d}.",
            key_id=str(key.key_id),
        )
    if key.state == KeyState.ENABLED:
        raise CmkShouldBeDisabled(
            f"Key {key.alias} is Enabled; disable it before scheduling its deletion.",
            key_id=str(key.key_id),
        )
    deletion_date = timezone.now() + timedelta(days=pending_window_in_days)
    return _transition(
        key_id,
        allowed_from=[KeyState.DISABLED],
        to=KeyState.PENDING_DELETE,
        guards=_deletion_guards(),
        deletion_date=deletion_date,
    )


def cancel_key_deletion(*, key_id: str) -> Key:
    return _transition(
        key_id, allowed_from=[KeyState.PENDING_DELETE], to=KeyState.DISABLED, deletion_date=None
    )


def purge_deleted_keys(
    *, now=None, dry_run: bool = False, skipped: list | None = None
) -> list[Key]:
    """Destroy every key whose deletion date has passed. Returns the keys destroyed.

    Keys something still protects (a signing policy) are left in place and a
    ``KeyInUse`` error for each is appended to ``skipped``.
    """
    skipped = skipped if skipped is not None else []
    now = now or timezone.now()
    due = list(_key_queryset().filter(state=KeyState.PENDING_DELETE, deletion_date__lte=now))
    if dry_run:
        return due
    purged = []
    for candidate in due:
        with transaction.atomic():
            key = (
                Key.objects.select_for_update()
                .filter(
                    key_id=candidate.key_id, state=KeyState.PENDING_DELETE, deletion_date__lte=now
                )
                .first()
            )
            if key is None:
                continue  # cancelled meanwhile
            try:
                with transaction.atomic():
                    key.delete()
            except ProtectedError as exc:
                users = ", ".join(sorted({str(obj) for obj in exc.protected_objects}))
                logger.warning(
                    "kms key not purged key_id=%s: still referenced by %s", key.key_id, users
                )
                skipped.append(
                    KeyInUse(
                        f"Key {key.alias} ({key.key_id}) is still used by {users}; not destroyed.",
                        key_id=str(key.key_id),
                    )
                )
                continue
            audit.record(
                "kms.key.purged",
                obj=candidate,
                details={"alias": candidate.alias, "deletion_date": candidate.deletion_date},
            )
        key_cache.evict(str(candidate.key_id))
        logger.info("kms key purged key_id=%s alias=%s", candidate.key_id, candidate.alias)
        purged.append(candidate)
    return purged


# --- service authorization --------------------------------------------------


def active_service_authorization(service: str) -> ServiceAuthorization | None:
    return ServiceAuthorization.objects.filter(service=service, revoked_at__isnull=True).first()


def is_service_authorized(service: str) -> bool:
    return ServiceAuthorization.objects.filter(service=service, revoked_at__isnull=True).exists()


def _require_known_service(service: str) -> None:
    if service not in AuthorizedService.values:
        raise InvalidParameter(
            f"Unknown service {service!r}; known services: {', '.join(AuthorizedService.values)}.",
            fields={"service": [f"Unknown service {service!r}."]},
        )


def grant_service_authorization(
    *, service: str, granted_by=None, note: str = ""
) -> ServiceAuthorization:
    """Idempotent: granting an active authorization returns the existing record."""
    _require_known_service(service)
    existing = active_service_authorization(service)
    if existing:
        return existing
    try:
        with transaction.atomic():
            grant = ServiceAuthorization.objects.create(
                service=service, granted_by=granted_by, note=note
            )
            audit.record(
                "kms.service_authorization.granted",
                obj=grant,
                object_repr=service,
                actor=granted_by,
                details={"service": service, "note": note},
            )
    except IntegrityError:
        existing = active_service_authorization(service)
        assert existing is not None
        return existing
    logger.info("kms service authorization granted service=%s", service)
    return grant


def revoke_service_authorization(*, service: str, revoked_by=None) -> ServiceAuthorization | None:
    _require_known_service(service)
    with transaction.atomic():
        grant = (
            ServiceAuthorization.objects.select_for_update()
            .filter(service=service, revoked_at__isnull=True)
            .first()
        )
        if grant is None:
            return None
        grant.revoked_at = timezone.now()
        grant.revoked_by = revoked_by
        grant.save(update_fields=["revoked_at", "revoked_by"])
        audit.record(
            "kms.service_authorization.revoked",
            obj=grant,
            object_repr=service,
            actor=revoked_by,
            details={"service": service},
        )
    logger.info("kms service authorization revoked service=%s", service)
    return grant


def require_service_authorization(service: str) -> None:
    if not is_service_authorized(service):
        label = AuthorizedService(service).label if service in AuthorizedService.values else service
        raise ServiceNotAuthorized(
            f"The {label} is not authorized to use KMS keys. An administrator must grant it: "
            f"Admin > Key management (KMS) > Service authorizations > Add (service "
            f"'{service}'), or POST /api/v1/kms/service-authorizations/ with "
            f'{{"service": "{service}"}}.',
            service=service,
        )


# --- sign / verify ------------------------------------------------------------


def _validate_message(message: bytes, message_type: str) -> None:
    if message_type == crypto.RAW:
        if not message:
            raise InvalidParameter(
                "Message must not be empty.", fields={"message": ["Must not be empty."]}
            )
        if len(message) > crypto.MAX_RAW_MESSAGE_BYTES:
            raise InvalidParameter(
                f"A RAW message must be at most {crypto.MAX_RAW_MESSAGE_BYTES} bytes "
                f"(it is {len(message)}); send its SHA-256 with MessageType DIGEST instead.",
                fields={"message": [f"At most {crypto.MAX_RAW_MESSAGE_BYTES} bytes."]},
            )
    elif message_type == crypto.DIGEST:
        if len(message) != crypto.DIGEST_BYTES:
            raise InvalidParameter(
                f"A DIGEST message must be exactly {crypto.DIGEST_BYTES} bytes (a SHA-256); "
                f"it is {len(message)}.",
                fields={"message": [f"Exactly {crypto.DIGEST_BYTES} bytes."]},
            )
    else:
        raise InvalidParameter(
            f"MessageType must be RAW or DIGEST, not {message_type!r}.",
            fields={"message_type": ["Must be RAW or DIGEST."]},
        )


def _require_algorithm(key: Key, algorithm: str) -> None:
    if algorithm not in key.allowed_algorithms:
        raise InvalidKeyUsage(
            f"Algorithm {algorithm!r} is not allowed for a key with usage {key.key_usage}; "
            f"use one of {', '.join(key.allowed_algorithms)}.",
            key_id=str(key.key_id),
        )


def _private_key(key: Key) -> crypto.PrivateKey:
    sealed = bytes(key.sealed_private_key)
    cached = key_cache.get(str(key.key_id), sealed)
    if cached is not None:
        return cached
    try:
        der = crypto.open_sealed(
            sealed,
            keyring=master_keyring(),
            key_id=str(key.key_id),
            version=key.master_key_version,
        )
    except crypto.SealError as exc:
        raise MasterKeyError(str(exc), key_id=str(key.key_id)) from None
    private_key = crypto.private_key_from_der(der)
    key_cache.put(str(key.key_id), sealed, private_key)
    return private_key


def sign(
    *,
    key_id: str,
    message: bytes,
    algorithm: str,
    message_type: str = crypto.RAW,
    on_behalf_of: str | None = None,
) -> bytes:
    """SignByAsymmetricKey. ``on_behalf_of`` names a service that needs authorization."""
    _validate_message(message, message_type)
    if on_behalf_of is not None:
        _require_known_service(on_behalf_of)
    try:
        key = Key.objects.get(key_id=key_id)
    except (Key.DoesNotExist, ValidationError, ValueError):
        raise KeyNotFound(f"No key with KeyId {key_id!s} exists.", key_id=str(key_id)) from None
    _require_enabled(key)
    _require_algorithm(key, algorithm)
    if on_behalf_of is not None:
        require_service_authorization(on_behalf_of)
    return crypto.sign(
        _private_key(key), algorithm=algorithm, message=message, message_type=message_type
    )


def verify(
    *,
    key_id: str,
    message: bytes,
    signature: bytes,
    algorithm: str,
    message_type: str = crypto.RAW,
) -> bool:
    """VerifyByAsymmetricKey, with the stored public key."""
    _validate_message(message, message_type)
    key = get_key(key_id=key_id)
    _require_enabled(key)
    _require_algorithm(key, algorithm)
    public_key = crypto.load_public_key(key.public_key_pem)
    return crypto.verify(
        public_key,
        algorithm=algorithm,
        message=message,
        message_type=message_type,
        signature=signature,
    )


# --- master key rotation ------------------------------------------------------


@dataclass(frozen=True)
class RotationResult:
    resealed: int
    already_current: int
    target_version: int
    # Other sealed material re-sealed by KMS_MASTER_KEY_ROTATION_HOOKS, by hook path.
    others: dict[str, int] | None = None


def rotate_master_key() -> RotationResult:
    """Re-seal every key still sealed under an older master-key version.

    Each key is re-sealed in its own short transaction holding only its row,
    so signing goes on meanwhile: every running process has both versions in
    its keyring. Safe to interrupt and run again.
    """
    keyring = master_keyring()
    target = keyring.current
    resealed = 0
    already = Key.objects.filter(master_key_version=target).count()
    stale_ids = list(
        Key.objects.exclude(master_key_version=target).values_list("key_id", flat=True)
    )
    for key_id in stale_ids:
        with transaction.atomic():
            key = Key.objects.select_for_update().filter(key_id=key_id).first()
            if key is None or key.master_key_version == target:
                continue
            try:
                der = crypto.open_sealed(
                    bytes(key.sealed_private_key),
                    keyring=keyring,
                    key_id=str(key.key_id),
                    version=key.master_key_version,
                )
            except crypto.SealError as exc:
                raise MasterKeyError(str(exc), key_id=str(key.key_id)) from None
            sealed, version = crypto.seal(der, keyring=keyring, key_id=str(key.key_id))
            key.sealed_private_key = sealed
            key.master_key_version = version
            key.save(update_fields=["sealed_private_key", "master_key_version", "updated_at"])
        key_cache.evict(str(key_id))
        resealed += 1
    others = {path: import_string(path)() for path in settings.KMS_MASTER_KEY_ROTATION_HOOKS}
    audit.record(
        "kms.master_key.rotated",
        object_type="kms.master_key",
        object_id=target,
        object_repr=f"master key version {target}",
        details={
            "target_version": target,
            "resealed": resealed,
            "already_current": already,
            "hooks": [{"hook": path, "resealed": count} for path, count in others.items()],
        },
    )
    logger.info("kms master key rotated to version %s: %s keys re-sealed", target, resealed)
    return RotationResult(
        resealed=resealed, already_current=already, target_version=target, others=others
    )
