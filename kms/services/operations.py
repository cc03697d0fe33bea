"""Using a key: sign, verify, and export its public key."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass

from django.core.exceptions import ValidationError

from kms import crypto
from kms.errors import InvalidKeyUsage, InvalidParameter, KeyNotFound
from kms.models import Key
from kms.selectors import get_key
from kms.services.authorization import require_known_service, require_service_authorization
from kms.services.material import private_key
from kms.services.states import require_enabled


@dataclass(frozen=True)
class PublicKeyInfo:
    key_id: str
    key_usage: str
    public_key_pem: str
    public_key_der_b64: str
    fingerprint: str


def get_public_key(*, key_id: str) -> PublicKeyInfo:
    key = get_key(key_id=key_id)
    require_enabled(key)
    der = crypto.public_key_der(key.public_key_pem)
    return PublicKeyInfo(
        key_id=str(key.key_id),
        key_usage=key.key_usage,
        public_key_pem=key.public_key_pem,
        public_key_der_b64=base64.b64encode(der).decode(),
        fingerprint=key.public_key_fingerprint,
    )


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


# How long a signing batch trusts the key row and the service's authorization it read:
# a key disabled, scheduled for deletion or re-sealed, or a grant revoked, stops the
# batch's signing at most this long after it happened (the next read after this sees it).
BATCH_SECONDS = 1.0


class SigningBatch:
    """Signatures made for one batch of work (a worker signing a page of images): the
    key row and the service's authorization are read once and trusted for at most
    ``max_age`` seconds, not read again for every signature. Every other check (message,
    key state, algorithm) runs for each signature, on what was read.

    One batch per unit of work, dropped at its end: nothing is kept from one batch to the
    next, so a state change is seen by every batch started after it. Not shared between
    threads. ``max_age=0`` reads both for every signature (``sign`` below).
    """

    def __init__(self, *, on_behalf_of: str | None = None, max_age: float | None = None):
        self.on_behalf_of = on_behalf_of
        self.max_age = BATCH_SECONDS if max_age is None else max_age
        self._keys: dict[str, tuple[float, Key]] = {}
        self._authorized_at: float | None = None

    def _fresh(self, read_at: float | None) -> bool:
        return read_at is not None and time.monotonic() - read_at < self.max_age

    def _key(self, key_id: str) -> Key:
        cached = self._keys.get(key_id)
        if cached is not None and self._fresh(cached[0]):
            return cached[1]
        try:
            key = Key.objects.get(key_id=key_id)
        except (Key.DoesNotExist, ValidationError, ValueError):
            raise KeyNotFound(f"No key with KeyId {key_id!s} exists.", key_id=str(key_id)) from None
        self._keys[key_id] = (time.monotonic(), key)
        return key

    def _require_authorization(self, service: str) -> None:
        if self._fresh(self._authorized_at):
            return
        # Only a grant is remembered: a refusal is asked again on the next signature.
        require_service_authorization(service)
        self._authorized_at = time.monotonic()

    def sign(
        self, *, key_id: str, message: bytes, algorithm: str, message_type: str = crypto.RAW
    ) -> bytes:
        """SignByAsymmetricKey, with this batch's reads (the checks of ``sign``)."""
        _validate_message(message, message_type)
        if self.on_behalf_of is not None:
            require_known_service(self.on_behalf_of)
        key = self._key(key_id)
        require_enabled(key)
        _require_algorithm(key, algorithm)
        if self.on_behalf_of is not None:
            self._require_authorization(self.on_behalf_of)
        return crypto.sign(
            private_key(key), algorithm=algorithm, message=message, message_type=message_type
        )


def sign(
    *,
    key_id: str,
    message: bytes,
    algorithm: str,
    message_type: str = crypto.RAW,
    on_behalf_of: str | None = None,
) -> bytes:
    """SignByAsymmetricKey. ``on_behalf_of`` names a service that needs authorization.
    The key and the authorization are read for this signature alone."""
    return SigningBatch(on_behalf_of=on_behalf_of, max_age=0).sign(
        key_id=key_id, message=message, algorithm=algorithm, message_type=message_type
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
    require_enabled(key)
    _require_algorithm(key, algorithm)
    public_key = crypto.load_public_key(key.public_key_pem)
    return crypto.verify(
        public_key,
        algorithm=algorithm,
        message=message,
        message_type=message_type,
        signature=signature,
    )
