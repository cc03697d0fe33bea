"""Pure cryptography for the KMS: key generation, sealing, signing. No ORM here."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

RSA_PKCS1_SHA_256 = "RSA_PKCS1_SHA_256"
RSA_PSS_SHA_256 = "RSA_PSS_SHA_256"
ECDSA_SHA_256 = "ECDSA_SHA_256"
RAW = "RAW"
DIGEST = "DIGEST"
MAX_RAW_MESSAGE_BYTES = 4096
DIGEST_BYTES = 32
_NONCE_BYTES = 12


class MasterKeyringError(ValueError):
    """The keyring text is malformed (the message never contains key bytes)."""


class SealError(Exception):
    """Sealed material could not be opened: wrong master key, wrong key id, or tampering."""


@dataclass(frozen=True)
class MasterKeyring:
    """Versioned AES-256 key-encryption keys; ``current`` seals, all of them open."""

    keys: dict[int, bytes]
    current: int

    @classmethod
    def parse(cls, text: str) -> MasterKeyring:
        text = (text or "").strip()
        if not text:
            raise MasterKeyringError("KMS_MASTER_KEY is empty")
        keys: dict[int, bytes] = {}
        order: list[int] = []
        for position, entry in enumerate(part.strip() for part in text.split(",")):
            if ":" in entry:
                version_text, key_text = entry.split(":", 1)
                try:
                    version = int(version_text)
                except ValueError:
                    raise MasterKeyringError(
                        f"KMS_MASTER_KEY entry {position + 1}: version must be a whole number"
                    ) from None
            else:
                version, key_text = 1, entry
            try:
                key = base64.b64decode(key_text, validate=True)
            except (binascii.Error, ValueError):
                raise MasterKeyringError(
                    f"KMS_MASTER_KEY entry {position + 1}: key is not valid base64"
                ) from None
            if len(key) != 32:
                raise MasterKeyringError(
                    f"KMS_MASTER_KEY entry {position + 1}: key must decode to 32 bytes, "
                    f"not {len(key)}"
                )
            if version < 1 or version in keys:
                raise MasterKeyringError(
                    f"KMS_MASTER_KEY entry {position + 1}: version {version} is not positive "
                    "or is repeated"
                )
            keys[version] = key
            order.append(version)
        return cls(keys=keys, current=order[0])

    def __repr__(self) -> str:  # never print key bytes
        return f"MasterKeyring(versions={sorted(self.keys)}, current={self.current})"

    __str__ = __repr__


def generate_master_key_text(version: int = 1) -> str:
    return f"{version}:{base64.b64encode(os.urandom(32)).decode()}"


def _aad(key_id: str, version: int) -> bytes:
    return f"signet-kms:{key_id}:v{version}".encode()


def seal(plaintext: bytes, *, keyring: MasterKeyring, key_id: str) -> tuple[bytes, int]:
    """AES-256-GCM under the current master key, bound to ``key_id`` and the version."""
    nonce = os.urandom(_NONCE_BYTES)
    version = keyring.current
    ciphertext = AESGCM(keyring.keys[version]).encrypt(nonce, plaintext, _aad(key_id, version))
    return nonce + ciphertext, version


def open_sealed(sealed: bytes, *, keyring: MasterKeyring, key_id: str, version: int) -> bytes:
    kek = keyring.keys.get(version)
    if kek is None:
        raise SealError(f"master key version {version} is not in KMS_MASTER_KEY")
    try:
        return AESGCM(kek).decrypt(
            bytes(sealed[:_NONCE_BYTES]), bytes(sealed[_NONCE_BYTES:]), _aad(key_id, version)
        )
    except InvalidTag:
        raise SealError(
            f"material of key {key_id} does not open under master key version {version}"
        ) from None


def generate_private_key(key_spec: str) -> PrivateKey:
    if key_spec == "RSA_2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if key_spec == "ECC_NIST_P256":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"unsupported key spec {key_spec}")


def private_key_to_der(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def private_key_from_der(der: bytes) -> PrivateKey:
    # The DER comes out of AES-GCM, which proves we wrote it: the costly RSA
    # consistency check (tens of ms) adds nothing here.
    key = serialization.load_der_private_key(
        der, password=None, unsafe_skip_rsa_key_validation=True
    )
    assert isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
    return key


def public_key_pem(key: PrivateKey | PublicKey) -> str:
    public = (
        key.public_key() if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) else key
    )
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def public_key_der(pem: str) -> bytes:
    public = serialization.load_pem_public_key(pem.encode())
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public_key(pem: str) -> PublicKey:
    key = serialization.load_pem_public_key(pem.encode())
    assert isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)
    return key


def fingerprint(pem: str) -> str:
    """SHA-256 of the DER SubjectPublicKeyInfo, hex: stable across PEM formatting."""
    return hashlib.sha256(public_key_der(pem)).hexdigest()


def _hash_args(
    message: bytes, message_type: str
) -> tuple[bytes, hashes.HashAlgorithm | utils.Prehashed]:
    if message_type == DIGEST:
        return message, utils.Prehashed(hashes.SHA256())
    return message, hashes.SHA256()


def _pss() -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)


def sign(key: PrivateKey, *, algorithm: str, message: bytes, message_type: str) -> bytes:
    data, hash_algorithm = _hash_args(message, message_type)
    if algorithm == RSA_PKCS1_SHA_256:
        assert isinstance(key, rsa.RSAPrivateKey)
        return key.sign(data, padding.PKCS1v15(), hash_algorithm)
    if algorithm == RSA_PSS_SHA_256:
        assert isinstance(key, rsa.RSAPrivateKey)
        return key.sign(data, _pss(), hash_algorithm)
    if algorithm == ECDSA_SHA_256:
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key.sign(data, ec.ECDSA(hash_algorithm))
    raise ValueError(f"unsupported algorithm {algorithm}")


def verify(
    key: PublicKey, *, algorithm: str, message: bytes, message_type: str, signature: bytes
) -> bool:
    data, hash_algorithm = _hash_args(message, message_type)
    try:
        if algorithm == RSA_PKCS1_SHA_256 and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hash_algorithm)
        elif algorithm == RSA_PSS_SHA_256 and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, _pss(), hash_algorithm)
        elif algorithm == ECDSA_SHA_256 and isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(hash_algorithm))
        else:
            return False
    except InvalidSignature:
        return False
    return True
