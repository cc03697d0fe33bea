"""Registry instances: create, change, delete, and keep their sealed secrets current.

Every write is audited (``registry.instance.*``) without a secret value. The rules the
fields follow are in ``registry.services.instance_rules``; the webhook token in
``registry.services.webhook_tokens``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError

from accounts.models import InstanceMembership
from accounts.services import revoke_membership
from audit import services as audit
from kms.services.material import master_keyring
from registry.errors import InstanceExists, InstanceInUse
from registry.instance_audit import audit_instance_deleted, audit_instance_updated, snapshot
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
            instance.save(force_insert=True)
            if secret:
                seal_for(instance, secret)  # the pk is part of the sealing context
                instance.save(update_fields=["sealed_secret", "secret_master_key_version"])
            _replace_domains(instance, domains)
            audit.record(
                "registry.instance.created",
                obj=instance,
                instance_name=name,
                details={
                    "region": region,
                    "backend_url": backend_url,
                    "auth_type": auth_type,
                    "username": username,
                    "default_domain": default_domain,
                    "custom_domains": domains,
                },
            )
    except IntegrityError:
        raise InstanceExists(
            f"A registry instance named {name!r} already exists.", name=name
        ) from None
    logger.info("registry instance created name=%s backend=%s", name, backend_url)
    return instance, token


_UNCHANGED: Any = object()


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

    def pick(value, current):
        return current if value is _UNCHANGED else value

    with transaction.atomic():
        # The stored row, not the caller's copy (a ModelForm has already changed that one):
        # the origin the secret was sealed for is the one in the database.
        instance = Instance.objects.select_for_update().get(pk=instance.pk)
        new_auth = pick(auth_type, instance.auth_type)
        dropping = new_auth == AuthType.NONE and auth_type is not _UNCHANGED
        new_username = pick(username, "" if dropping else instance.username)
        new_secret_env = pick(secret_env, "" if dropping else instance.secret_env)
        if dropping and secret is None:
            secret = ""
        new_domain = pick(default_domain, instance.default_domain).strip().lower()
        domains = (
            normalise_domains(custom_domains)
            if custom_domains is not None
            else sorted(instance.domains.filter(is_default=False).values_list("name", flat=True))
        )
        new_backend = pick(backend_url, instance.backend_url).strip().rstrip("/")
        if not same_origin(instance.backend_url, new_backend):
            if secret is None:
                secret = ""
            if secret_env is _UNCHANGED:
                new_secret_env = ""
        if secret_env is not _UNCHANGED and secret_env and secret is None:
            secret = ""  # an environment variable replaces the stored secret
        if secret and secret_env is _UNCHANGED:
            new_secret_env = ""  # a stored secret replaces the environment variable
        validate_instance_fields(
            region=pick(region, instance.region),
            backend_url=new_backend,
            auth_type=new_auth,
            username=new_username,
            secret=secret,
            secret_env=new_secret_env,
            default_domain=new_domain,
            custom_domains=domains,
            has_stored_secret=instance.sealed_secret is not None,
            current_backend_url=instance.backend_url,
            instance_id=instance.pk,
        )
        before = snapshot(instance)
        instance.region = pick(region, instance.region)
        instance.description = pick(description, instance.description)
        instance.backend_url = new_backend
        instance.auth_type = new_auth
        instance.username = new_username
        instance.secret_env = new_secret_env
        instance.default_domain = new_domain
        if secret is not None:
            seal_for(instance, secret)
        instance.save()
        _replace_domains(instance, domains)
        audit_instance_updated(instance, before, secret_given=bool(secret))
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
