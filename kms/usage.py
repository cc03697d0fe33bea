"""Signing and verifying with KMS keys on a caller's direct request (the KMS API), audited.

Every request that reaches a key (the caller is authenticated and holds ``kms.use_key``;
the body parsed) leaves one event, whatever the outcome: ``kms.key.sign_requested`` or
``kms.key.verify_requested``, by the caller, with the key id, the algorithm, the message
type, the SHA-256 of the message and its length, the outcome (``signed``, ``valid``,
``invalid``, or ``refused`` with the error code) and, for a sign on behalf of a service,
its name. Never the message nor the signature: a message may be confidential, and the
digest is enough to match a signature to what was signed.

Signet's own signing of images calls ``kms.services.operations`` (or, with
``KMS_BACKEND=http``, this API as its service user) and is audited by the signing app; with
the HTTP backend each of its signatures is then also one ``kms.key.sign_requested`` event
of the KMS.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

from audit import services as audit
from config.errors import DomainError
from kms.services import operations

_ACTIONS = {"sign": "kms.key.sign_requested", "verify": "kms.key.verify_requested"}


def _key_id(key_id: str) -> str:
    """The canonical form of a UUID key id; anything else as given (it named no key)."""
    try:
        return str(uuid.UUID(str(key_id)))
    except ValueError:
        return str(key_id)[:100]


@dataclass(frozen=True)
class _Request:
    """What one sign or verify request asked for: the audited part of it."""

    operation: str
    key_id: str
    message: bytes
    algorithm: str
    message_type: str
    caller: Any


def _record(request: _Request, outcome: str, **details: Any) -> None:
    canonical = _key_id(request.key_id)
    audit.record(
        _ACTIONS[request.operation],
        object_type="kms.key",
        object_id=canonical,
        actor=request.caller,
        details={
            "key_id": canonical,
            "algorithm": str(request.algorithm)[:100],
            "message_type": str(request.message_type)[:20],
            "message_sha256": hashlib.sha256(request.message).hexdigest(),
            "message_bytes": len(request.message),
            "outcome": outcome,
            **details,
        },
    )


def sign(
    *,
    key_id: str,
    message: bytes,
    algorithm: str,
    message_type: str,
    on_behalf_of: str | None = None,
    caller: Any = None,
) -> bytes:
    """``kms.services.operations.sign``, audited (see the module docstring)."""
    request = _Request("sign", key_id, message, algorithm, message_type, caller)
    extra = {"on_behalf_of": on_behalf_of} if on_behalf_of is not None else {}
    try:
        signature = operations.sign(
            key_id=key_id,
            message=message,
            algorithm=algorithm,
            message_type=message_type,
            on_behalf_of=on_behalf_of,
        )
    except DomainError as exc:
        _record(request, "refused", error_code=exc.code, **extra)
        raise
    _record(request, "signed", **extra)
    return signature


def verify(
    *,
    key_id: str,
    message: bytes,
    signature: bytes,
    algorithm: str,
    message_type: str,
    caller: Any = None,
) -> bool:
    """``kms.services.operations.verify``, audited (see the module docstring)."""
    request = _Request("verify", key_id, message, algorithm, message_type, caller)
    try:
        valid = operations.verify(
            key_id=key_id,
            message=message,
            signature=signature,
            algorithm=algorithm,
            message_type=message_type,
        )
    except DomainError as exc:
        _record(request, "refused", error_code=exc.code)
        raise
    _record(request, "valid" if valid else "invalid")
    return valid
