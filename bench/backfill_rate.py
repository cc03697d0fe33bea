"""Backfill rate: how fast ``manage.py backfill_signatures`` signs existing tags.

Run: .venv/bin/python bench/backfill_rate.py [--tags 10000] [--batch-size 200] [--tmpfs]

What it does, all on loopback:
  1. starts a real docker-registry (tests/support/registry_server.RegistryServer), with
     its storage in a temporary directory (``--tmpfs``: under /dev/shm);
  2. pushes ONE config + layer blob pair, then N tiny distinct image manifests that
     reference them (each differs by an annotation), each under its own tag;
  3. records them in Signet through ``registry.services.record_events`` (webhook-shaped
     push events, before any policy exists, so nothing is signed yet) into a throw-away
     SQLite database file;
  4. creates an RSA-2048 KMS key, authorizes the signing service, creates the policy;
  5. runs the backfill command (the same code path as ``manage.py backfill_signatures``),
     counting DB queries and registry HTTP requests, sampling RSS at every batch line;
  6. runs it again (everything already signed) and verifies a few images the way
     ``POST /api/v1/signing/verify/`` does.

Prints tags/s, total time, peak RSS (``resource.getrusage``), RSS at the first and the
last batch (flat memory), DB queries and registry requests per signed image.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings_test")
_DB_DIR = tempfile.mkdtemp(prefix="signet-bench-db-")
os.environ["DATABASE_URL"] = f"sqlite:///{_DB_DIR}/bench.sqlite3"

import django  # noqa: E402

django.setup()

import requests  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from kms import services as kms_services  # noqa: E402
from kms.models import AuthorizedService  # noqa: E402
from registry import services as registry_services  # noqa: E402
from registry.client import OCI_MANIFEST, RegistryClient, sha256_digest  # noqa: E402
from registry.models import Tag  # noqa: E402
from signing import services  # noqa: E402
from signing.models import Signature, SignatureStatus  # noqa: E402
from signing.verification import verify_image  # noqa: E402
from tests.support.oci import build_image, canonical_json  # noqa: E402
from tests.support.registry_server import RegistryServer  # noqa: E402

REPOSITORY = "bench/app"
PUSH_THREADS = 8
EVENTS_PER_DELIVERY = 500


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def manifests(count: int) -> tuple[bytes, bytes, list[bytes]]:
    image = build_image(seed="bench")
    base = json.loads(image.manifest)
    return (
        image.config,
        image.layer,
        [
            canonical_json({**base, "annotations": {"org.signet.bench.n": str(n)}})
            for n in range(count)
        ],
    )


def push(server: RegistryServer, count: int) -> list[tuple[str, str, int]]:
    """Push ``count`` tags; returns (tag, digest, size) for each."""
    config, layer, documents = manifests(count)
    setup = RegistryClient(server.url)
    setup.upload_blob(REPOSITORY, config)
    setup.upload_blob(REPOSITORY, layer)
    setup.close()

    def push_slice(start: int) -> list[tuple[str, str, int]]:
        client = RegistryClient(server.url)
        done = []
        for n in range(start, count, PUSH_THREADS):
            tag = f"t{n:06d}"
            digest = client.put_manifest(REPOSITORY, tag, documents[n], OCI_MANIFEST)
            assert digest == sha256_digest(documents[n])
            done.append((tag, digest, len(documents[n])))
        client.close()
        return done

    with ThreadPoolExecutor(PUSH_THREADS) as pool:
        return sorted(item for part in pool.map(push_slice, range(PUSH_THREADS)) for item in part)


def record(instance, pushed: list[tuple[str, str, int]]) -> None:
    for start in range(0, len(pushed), EVENTS_PER_DELIVERY):
        events = [
            {
                "id": str(uuid.uuid4()),
                "timestamp": "2026-11-28T12:00:00Z",
                "action": "push",
                "target": {
                    "mediaType": OCI_MANIFEST,
                    "repository": REPOSITORY,
                    "digest": digest,
                    "size": size,
                    "length": size,
                    "tag": tag,
                },
                "request": {"method": "PUT"},
                "actor": {},
                "source": {"addr": "bench"},
            }
            for tag, digest, size in pushed[start : start + EVENTS_PER_DELIVERY]
        ]
        result = registry_services.record_events(instance=instance, envelope={"events": events})
        assert result.processed == len(events), result


class BatchLog:
    """A stdout for the command: echoes its lines and samples RSS at each batch line."""

    def __init__(self, echo_every: int) -> None:
        self.samples: list[float] = []
        self.lines: list[str] = []
        self.echo_every = echo_every

    def write(self, text: str) -> None:
        for line in text.splitlines():
            if not line:
                continue
            self.lines.append(line)
            if line.startswith("batch "):
                self.samples.append(rss_mib())
                if len(self.samples) % self.echo_every and len(self.samples) != 1:
                    continue
            print("   |", line, flush=True)

    def flush(self) -> None:
        pass


class Counters:
    def __init__(self) -> None:
        self.queries = 0
        self.http = 0

    def query(self, execute, sql, params, many, context):
        self.queries += 1
        return execute(sql, params, many, context)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tags", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--tmpfs", action="store_true", help="registry storage on /dev/shm")
    args = parser.parse_args()

    call_command("migrate", verbosity=0)
    workdir = tempfile.mkdtemp(
        prefix="signet-bench-registry-", dir="/dev/shm" if args.tmpfs else None
    )
    with RegistryServer(workdir=workdir) as server:
        print(f"registry {server.url} storage {workdir}")
        started = time.perf_counter()
        pushed = push(server, args.tags)
        print(f"pushed {len(pushed)} tags in {time.perf_counter() - started:.1f}s")

        instance, _token = registry_services.create_instance(
            name="bench", backend_url=server.url, default_domain=server.host
        )
        started = time.perf_counter()
        record(instance, pushed)
        print(
            f"recorded {Tag.objects.count()} tags in Signet in {time.perf_counter() - started:.1f}s"
        )
        key = kms_services.create_key(alias="bench-signer")
        kms_services.grant_service_authorization(service=AuthorizedService.REGISTRY_SIGNING)
        namespace = instance.namespaces.get(name="bench")
        services.create_policy(namespace=namespace, name="bench-policy", key=key)

        counters = Counters()
        original_send = requests.Session.send

        def counting_send(session, request, **kwargs):
            counters.http += 1
            return original_send(session, request, **kwargs)

        log = BatchLog(echo_every=max(1, args.tags // args.batch_size // 10))
        rss_before = rss_mib()
        print(f"backfill of {args.tags} tags, batch size {args.batch_size}:")
        started = time.perf_counter()
        with (
            connection.execute_wrapper(counters.query),
            mock.patch.object(requests.Session, "send", counting_send),
        ):
            call_command(
                "backfill_signatures",
                "--instance",
                "bench",
                "--batch-size",
                str(args.batch_size),
                stdout=log,
                stderr=log,
            )
        elapsed = time.perf_counter() - started
        signed = Signature.objects.filter(status=SignatureStatus.SIGNED).count()

        again_log = BatchLog(echo_every=10**9)
        started = time.perf_counter()
        call_command("backfill_signatures", "--instance", "bench", stdout=again_log)
        again = time.perf_counter() - started

        tags = list(Tag.objects.order_by("?").values_list("name", flat=True)[:3])
        verified = [
            verify_image(image=f"{server.host}/{REPOSITORY}:{tag}").verified for tag in tags
        ]

    print()
    print(f"tags signed              : {signed} / {args.tags}")
    print(f"backfill time            : {elapsed:.1f}s")
    print(f"rate                     : {signed / elapsed:.1f} tags/s")
    print(f"peak RSS (getrusage)     : {peak_rss_mib():.1f} MiB")
    print(f"RSS before backfill      : {rss_before:.1f} MiB")
    if log.samples:
        print(
            f"RSS at first / last batch: {log.samples[0]:.1f} / {log.samples[-1]:.1f} MiB "
            f"(max {max(log.samples):.1f})"
        )
    print(
        f"DB queries per image     : {counters.queries / max(signed, 1):.1f} "
        f"({counters.queries} in all)"
    )
    print(f"registry requests / image: {counters.http / max(signed, 1):.1f}")
    print(f"second run (all signed)  : {again:.1f}s -> {again_log.lines[-1]}")
    print(f"spot verification        : {verified}")


if __name__ == "__main__":
    main()
