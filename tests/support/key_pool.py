"""RSA-2048 private keys generated once per test process and handed out again in every test.

Generating an RSA-2048 key takes 50-100 ms and a few hundred tests create one or more (every
``make_key``, the admin's and the API's create-key paths, ``Signer.create``). The root
conftest swaps ``kms.crypto.generate_private_key`` for ``take`` for RSA_2048 in each test:
within one test every key is distinct (the n-th key asked for is the n-th of the pool, which
grows when a test needs more keys than any test before it), so tests that compare
fingerprints or expect another key's signature to fail still see different keys. Elliptic-curve
keys are cheap and not pooled; ``manage.py`` processes started by tests generate their own.
"""

from __future__ import annotations

import threading

from cryptography.hazmat.primitives.asymmetric import rsa


class RsaKeyPool:
    def __init__(self) -> None:
        self._keys: list[rsa.RSAPrivateKey] = []
        self._handed_out = 0
        self._lock = threading.Lock()  # the live server's threads create keys too

    def start_test(self) -> None:
        """The next test starts again from the first key."""
        with self._lock:
            self._handed_out = 0

    def take(self) -> rsa.RSAPrivateKey:
        """A key no one has been given since ``start_test``."""
        with self._lock:
            if self._handed_out == len(self._keys):
                self._keys.append(rsa.generate_private_key(public_exponent=65537, key_size=2048))
            key = self._keys[self._handed_out]
            self._handed_out += 1
            return key


POOL = RsaKeyPool()
