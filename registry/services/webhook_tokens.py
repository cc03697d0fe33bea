"""The webhook token an instance's registry authenticates with: created with the
instance, rotated on request, shown once and stored only as its SHA-256 hash."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets

from django.db import transaction
from django.utils import timezone

from audit import services as audit
from registry.models import Instance

logger = logging.getLogger(__name__)

# Compared against when the instance does not exist; no token hashes to it in practice.
_NO_INSTANCE_HASH = "0" * 64


def hash_webhook_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_webhook_token() -> tuple[str, str]:
    """A new token and its hash."""
    token = secrets.token_urlsafe(32)
    return token, hash_webhook_token(token)


@transaction.atomic  # the audit event commits with the new token hash
def rotate_webhook_token(*, instance: Instance) -> str:
    """A new webhook token; the old one stops working at once. Returned once, stored hashed."""
    token, token_hash = new_webhook_token()
    Instance.objects.filter(pk=instance.pk).update(
        webhook_token_hash=token_hash,
        webhook_token_rotated_at=timezone.now(),
        updated_at=timezone.now(),
    )
    audit.record(
        "registry.instance.webhook_token_rotated", obj=instance, instance_name=instance.name
    )
    instance.webhook_token_hash = token_hash
    logger.info("registry instance webhook token rotated name=%s", instance.name)
    return token


def authenticate_webhook(*, instance: Instance, token: str | None) -> bool:
    """Constant-time comparison of the token's hash with the stored one."""
    if not token or not isinstance(token, str):
        return False
    return hmac.compare_digest(hash_webhook_token(token), instance.webhook_token_hash)


def authenticated_webhook_instance(*, name: str, token: str | None) -> Instance | None:
    """The instance ``name`` if ``token`` is its webhook token; None for a wrong token and
    for an unknown instance alike (a hash is compared either way)."""
    instance = Instance.objects.filter(name=name).first() if isinstance(name, str) else None
    stored = instance.webhook_token_hash if instance is not None else _NO_INSTANCE_HASH
    if not token or not isinstance(token, str):
        return None
    if not hmac.compare_digest(hash_webhook_token(token), stored) or instance is None:
        return None
    return instance
