"""The master keyring and the private keys it opens: one cache of unsealed keys per
process, evicted whenever a key changes state or is re-sealed."""

from __future__ import annotations

from functools import cache

from django.conf import settings

from kms import crypto
from kms.errors import MasterKeyError
from kms.keycache import PrivateKeyCache
from kms.models import Key

key_cache = PrivateKeyCache(getattr(settings, "KMS_KEY_CACHE_SIZE", 256))


@cache
def _keyring_for(text: str) -> crypto.MasterKeyring:
    return crypto.MasterKeyring.parse(text)


def master_keyring() -> crypto.MasterKeyring:
    try:
        return _keyring_for(settings.KMS_MASTER_KEY)
    except crypto.MasterKeyringError as exc:
        raise MasterKeyError(f"KMS_MASTER_KEY is unusable: {exc}") from None


def private_key(key: Key) -> crypto.PrivateKey:
    """``key``'s private key, unsealed with the master keyring (cached)."""
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
    unsealed = crypto.private_key_from_der(der)
    key_cache.put(str(key.key_id), sealed, unsealed)
    return unsealed
