"""A signer outside Signet (another tool, another key): writes cosign signature layers
the way Signet does, for tests that need a foreign or a second signature."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from signing.payload import SignatureLayer, signing_annotations
from tests.support.key_pool import POOL


@dataclass
class Signer:
    key: rsa.RSAPrivateKey
    public_pem: Path

    @classmethod
    def create(cls, path: Path) -> Signer:
        key = POOL.take()
        path.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        return cls(key=key, public_pem=path)

    @property
    def fingerprint(self) -> str:
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return hashlib.sha256(der).hexdigest()

    def sign(self, payload: bytes) -> SignatureLayer:
        signature = self.key.sign(payload, padding.PKCS1v15(), hashes.SHA256())
        return SignatureLayer(
            payload=payload,
            signature_b64=base64.b64encode(signature).decode(),
            annotations=signing_annotations(key_fingerprint=self.fingerprint),
        )
