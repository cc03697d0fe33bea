"""Registry instances: create, change, delete, and keep their sealed secrets current.

Every write is audited (``registry.instance.*``) without a secret value. The rules the
fields follow are in ``registry.services.instance_rules``; the webhook token in
``registry.services.webhook_tokens``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError

from accounts.models import InstanceMembership
from accounts.services import revoke_membership
from kms.services.material import master_keyring
from registry.errors import InstanceExists, InstanceInUse
from registry.instance_audit import (
    audit_instance_created,
    audit_instance_deleted,
    audit_instance_updated,
    snapshot,
)
from registry.models import AuthType, Instance, InstanceDomain
from registry.secrets import same_origin, seal_for
from registry.services.instance_rules import (
    normalise_domains,
    raise_if_domains_taken,
    validate_instance_fields,
)
from registry.services.webhook_tokens import new_webhook_token

logger = logging.getLogger(__name__)


def _replace_domains(instance: Instance, domains: Sequence[str]) -> None:
    """Make the instance's domain rows its default domain plus ``domains`` (custom).

    The unique name constraint settles a race with another instance claiming the same
    name: the loser gets DomainNameTaken and its whole change rolls back.
    """
    wanted = {instance.default_domain: True, **dict.fromkeys(domains, False)}
    rows = instance.domains
    try:
        with transaction.atomic():
            rows.exclude(name__in=wanted).delete()
            # Clear a moved default flag first: one default row per instance.
            rows.filter(is_default=True).exclude(name=instance.default_domain).update(
                is_default=False
            )
            existing = set(rows.values_list("name", flat=True))
            for name, is_default in wanted.items():
                if name in existing:
                    rows.filter(name=name).exclude(is_default=is_default).update(
                        is_default=is_default
                    )
                else:
                    InstanceDomain.objects.create(
                        instance=instance, name=name, is_default=is_default
                    )
    except IntegrityError:
        raise_if_domains_taken(instance.default_domain, domains, instance_id=instance.pk)
        raise


def _insert_instance(instance: Instance, *, secret: str, custom_domains: Sequence[str]) -> None:
    """Save a new instance, its sealed secret and its domain rows (in the caller's
    transaction)."""
    instance.save(force_insert=True)
    if secret:
        seal_for(instance, secret)  # the pk is part of the sealing context
        instance.save(update_fields=["sealed_secret", "secret_master_key_version"])
    _replace_domains(instance, custom_domains)


def create_instance(
    *,
    name: str,
    backend_url: str,
    default_domain: str,
    region: str | None = None,
    description: str = "",
    auth_type: str = AuthType.NONE,
    username: str = "",
    secret: str = "",
    secret_env: str = "",
    custom_domains: Sequence[str] = (),
) -> tuple[Instance, str]:
    """Create an instance; returns it and its webhook token (shown once, stored hashed)."""
    region = region or settings.KMS_DEFAULT_REGION
    default_domain = (default_domain or "").strip().lower()
    domains = normalise_domains(custom_domains)
    backend_url = (backend_url or "").strip().rstrip("/")
    # First: re-creating an instance would otherwise be refused for its own domain names.
    if isinstance(name, str) and Instance.objects.filter(name=name).exists():
        raise InstanceExists(f"A registry instance named {name!r} already exists.", name=name)
    validate_instance_fields(
        name=name,
        region=region,
        backend_url=backend_url,
        auth_type=auth_type,
        username=username,
        secret=secret,
        secret_env=secret_env,
        default_domain=default_domain,
        custom_domains=domains,
    )
    token, token_hash = new_webhook_token()
    instance = Instance(
        name=name,
        region=region,
        description=description,
        backend_url=backend_url,
        auth_type=auth_type,
        username=username,
        secret_env=secret_env,
        default_domain=default_domain,
        webhook_token_hash=token_hash,
    )
    try:
        with transaction.atomic():
            _insert_instance(instance, secret=secret, custom_domains=domains)
            audit_instance_created(instance, custom_domains=domains)
    except IntegrityError:
        raise InstanceExists(
            f"A registry instance named {name!r} already exists.", name=name
        ) from None
    logger.info("registry instance created name=%s backend=%s", name, backend_url)
    return instance, token


_UNCHANGED: Any = object()


def _unless_unchanged(value: Any, current: Any) -> Any:
    return current if value is _UNCHANGED else value


@dataclass(frozen=True)
class _Credentials:
    auth_type: str
    username: str
    secret: str | None  # None keeps the stored secret, "" removes it
    secret_env: str


@dataclass(frozen=True)
class _InstanceUpdate:
    region: str
    description: str
    backend_url: str
    credentials: _Credentials
    default_domain: str
    custom_domains: list[str]


def _credentials_after_update(
    instance: Instance,
    *,
    auth_type: str,
    username: str,
    secret: str | None,
    secret_env: str,
    backend_url: str,
) -> _Credentials:
    """The credentials an update leaves, by the rules ``update_instance`` documents.

    ``backend_url`` is the URL after the update, normalised.
    """
    new_auth = _unless_unchanged(auth_type, instance.auth_type)
    dropping = new_auth == AuthType.NONE and auth_type is not _UNCHANGED
    new_username = _unless_unchanged(username, "" if dropping else instance.username)
    new_secret_env = _unless_unchanged(secret_env, "" if dropping else instance.secret_env)
    if dropping and secret is None:
        secret = ""
    if not same_origin(instance.backend_url, backend_url):
        if secret is None:
            secret = ""
        if secret_env is _UNCHANGED:
            new_secret_env = ""
    if secret_env is not _UNCHANGED and secret_env and secret is None:
        secret = ""  # an environment variable replaces the stored secret
    if secret and secret_env is _UNCHANGED:
        new_secret_env = ""  # a stored secret replaces the environment variable
    return _Credentials(
        auth_type=new_auth, username=new_username, secret=secret, secret_env=new_secret_env
    )


def _resolve_update(
    instance: Instance,
    *,
    region: str,
    description: str,
    backend_url: str,
    auth_type: str,
    username: str,
    secret: str | None,
    secret_env: str,
    default_domain: str,
    custom_domains: Sequence[str] | None,
) -> _InstanceUpdate:
    """Every field after the update: a field not given keeps the stored row's value."""
    new_domain = _unless_unchanged(default_domain, instance.default_domain).strip().lower()
    domains = (
        normalise_domains(custom_domains)
        if custom_domains is not None
        else sorted(instance.domains.filter(is_default=False).values_list("name", flat=True))
    )
    new_backend = _unless_unchanged(backend_url, instance.backend_url).strip().rstrip("/")
    credentials = _credentials_after_update(
        instance,
        auth_type=auth_type,
        username=username,
        secret=secret,
        secret_env=secret_env,
        backend_url=new_backend,
    )
    return _InstanceUpdate(
        region=_unless_unchanged(region, instance.region),
        description=_unless_unchanged(description, instance.description),
        backend_url=new_backend,
        credentials=credentials,
        default_domain=new_domain,
        custom_domains=domains,
    )


def _validate_update(instance: Instance, update: _InstanceUpdate) -> None:
    """The instance rules, for the update of the stored row ``instance``."""
    validate_instance_fields(
        region=update.region,
        backend_url=update.backend_url,
        auth_type=update.credentials.auth_type,
        username=update.credentials.username,
        secret=update.credentials.secret,
        secret_env=update.credentials.secret_env,
        default_domain=update.default_domain,
        custom_domains=update.custom_domains,
        has_stored_secret=instance.sealed_secret is not None,
        current_backend_url=instance.backend_url,
        instance_id=instance.pk,
    )


def _apply_update(instance: Instance, update: _InstanceUpdate) -> None:
    """Set the instance's fields (and seal a given secret); the caller saves."""
    instance.region = update.region
    instance.description = update.description
    instance.backend_url = update.backend_url
    instance.auth_type = update.credentials.auth_type
    instance.username = update.credentials.username
    instance.secret_env = update.credentials.secret_env
    instance.default_domain = update.default_domain
    if update.credentials.secret is not None:
        seal_for(instance, update.credentials.secret)


def update_instance(
    *,
    instance: Instance,
    region: str = _UNCHANGED,
    description: str = _UNCHANGED,
    backend_url: str = _UNCHANGED,
    auth_type: str = _UNCHANGED,
    username: str = _UNCHANGED,
    secret: str | None = None,
    secret_env: str = _UNCHANGED,
    default_domain: str = _UNCHANGED,
    custom_domains: Sequence[str] | None = None,
) -> Instance:
    """Change an instance. The name is fixed (the registry's webhook URL contains it).

    ``secret`` None keeps the stored secret, ``""`` removes it, anything else replaces it.
    Switching ``auth_type`` to ``none`` drops the stored credentials. Moving
    ``backend_url`` to another origin (scheme, host, port) drops the stored secret and
    ``secret_env`` unless the same call gives them again: a credential given for one host
    is never sent to another (refused with a precise message while the auth type needs one).
    Audited (``registry.instance.updated``) with the changed fields, never a secret value.
    """
    with transaction.atomic():
        # The stored row, not the caller's copy (a ModelForm has already changed that one):
        # the origin the secret was sealed for is the one in the database.
        instance = Instance.objects.select_for_update().get(pk=instance.pk)
        update = _resolve_update(
            instance,
            region=region,
            description=description,
            backend_url=backend_url,
            auth_type=auth_type,
            username=username,
            secret=secret,
            secret_env=secret_env,
            default_domain=default_domain,
            custom_domains=custom_domains,
        )
        _validate_update(instance, update)
        before = snapshot(instance)
        _apply_update(instance, update)
        instance.save()
        _replace_domains(instance, update.custom_domains)
        audit_instance_updated(instance, before, secret_given=bool(update.credentials.secret))
    logger.info("registry instance updated name=%s", instance.name)
    return instance


def delete_instance(*, instance: Instance) -> None:
    """Delete an instance without namespaces; audited (``registry.instance.deleted``)."""
    with transaction.atomic():
        if instance.namespaces.exists():
            raise InstanceInUse(
                f"Instance {instance.name} still has {instance.namespaces.count()} namespace(s); "
                "delete them first.",
                name=instance.name,
            )
        # Recorded while the row exists (the event names it by id); a refused delete rolls
        # the events back with it. Memberships go through the service, so their end is
        # audited too (the cascade would remove them silently).
        audit_instance_deleted(instance)
        for membership in InstanceMembership.objects.select_related("user", "instance").filter(
            instance=instance
        ):
            revoke_membership(membership=membership)
        try:
            instance.delete()
        except ProtectedError:
            raise InstanceInUse(
                f"Instance {instance.name} is still in use.", name=instance.name
            ) from None
    logger.info("registry instance deleted name=%s", instance.name)


def reseal_instance_secrets() -> int:
    """Re-seal stored registry credentials under the current master key (after a rotation)."""
    keyring = master_keyring()
    resealed = 0
    stale = Instance.objects.filter(sealed_secret__isnull=False).exclude(
        secret_master_key_version=keyring.current
    )
    for pk in stale.values_list("pk", flat=True):
        with transaction.atomic():
            instance = Instance.objects.select_for_update().get(pk=pk)
            current = instance.secret_master_key_version == keyring.current
            if instance.sealed_secret is None or current:
                continue
            seal_for(instance, instance.secret())
            instance.save(update_fields=["sealed_secret", "secret_master_key_version"])
            resealed += 1
    return resealed
