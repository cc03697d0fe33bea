"""Signatures per second through kms.services.operations.sign versus a bare cryptography loop.

Run: .venv/bin/python bench/kms_sign_rate.py [--seconds 3]

It builds a throw-away in-memory SQLite database, creates one RSA-2048 key
through the service, and measures, in the same process and run:
  bare     - key.sign(payload, PKCS1v15, SHA256) on an already loaded key
  service  - operations.sign(...) with the private-key cache warm (DB read + state check + sign)
  no-cache - operations.sign(...) with the cache cleared before every call (unseal + parse + sign)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings_test")
os.environ["DATABASE_URL"] = "sqlite://:memory:"

import django

django.setup()

from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import padding, rsa  # noqa: E402
from django.core.management import call_command  # noqa: E402

from kms import services  # noqa: E402
from kms.services import material, operations  # noqa: E402


def rate(fn, seconds: float) -> float:
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        fn()
        count += 1
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    key = services.create_key(alias="bench")
    payload = b'{"critical":{"identity":{"docker-reference":"r.example.com/ns/app"}}}'
    private = material.private_key(key)
    assert isinstance(private, rsa.RSAPrivateKey)  # the service's default key spec

    bare = rate(lambda: private.sign(payload, padding.PKCS1v15(), hashes.SHA256()), args.seconds)
    material.key_cache.clear()
    service = rate(
        lambda: operations.sign(
            key_id=str(key.key_id), message=payload, algorithm="RSA_PKCS1_SHA_256"
        ),
        args.seconds,
    )

    def uncached() -> None:
        material.key_cache.clear()
        operations.sign(key_id=str(key.key_id), message=payload, algorithm="RSA_PKCS1_SHA_256")

    no_cache = rate(uncached, args.seconds)
    print(f"bare cryptography sign : {bare:8.1f} signatures/s")
    print(f"service, cache warm    : {service:8.1f} signatures/s  ({service / bare:.2f} x bare)")
    print(f"service, cache cleared : {no_cache:8.1f} signatures/s  ({no_cache / bare:.2f} x bare)")
    print(f"cache speed-up         : {service / no_cache:.2f} x")


if __name__ == "__main__":
    main()
