"""Using a key: sign, verify, and export its public key."""

from __future__ import annotations

import base64
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
        require_known_service(on_behalf_of)
    try:
        key = Key.objects.get(key_id=key_id)
    except (Key.DoesNotExist, ValidationError, ValueError):
        raise KeyNotFound(f"No key with KeyId {key_id!s} exists.", key_id=str(key_id)) from None
    require_enabled(key)
    _require_algorithm(key, algorithm)
    if on_behalf_of is not None:
        require_service_authorization(on_behalf_of)
    return crypto.sign(
        private_key(key), algorithm=algorithm, message=message, message_type=message_type
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
