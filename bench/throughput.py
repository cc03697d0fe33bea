"""Signing throughput: Signet's backfill beside a bare publisher and ``cosign sign``.

Run: /work/venv2/bin/python bench/throughput.py [--images 240] [--postgres URL]

Everything on loopback, in one run, against ONE docker-registry (storage under /dev/shm,
its access log on) and the same N distinct image manifests (``bench/backfill_rate.py``'s
images, spread over the repositories ``bench0/app`` .. ``bench3/app``):

  bare x1, bare x4   a bare publisher: one keep-alive ``requests.Session`` per thread,
                     fetches each manifest by digest and checks its sha256, builds the
                     cosign payload, signs it with ``cryptography`` (RSA-2048 PKCS#1 v1.5
                     SHA-256), uploads the two blobs (payload and config), PUTs the
                     ``.sig`` manifest. 1 or 4 threads.
  signet x1          ``signing.backfill`` over the whole instance (what
                     ``manage.py backfill_signatures --instance bench`` runs), one worker.
  signet x4          4 backfills at once, one per namespace, each in its own thread with
                     its own database connection (4 workers claiming rows in one process,
                     as 4 dispatcher threads would).
  signet x4 procs    4 backfills at once, one per namespace, each in its own worker
                     process (forked once Django is set up, so no start-up is timed), as
                     4 deployed Celery worker processes sign: no interpreter lock shared.
  cosign             ``cosign sign`` given every image in one invocation (its own ECDSA
                     P-256 key: Debian's cosign cannot import an RSA key; no tlog upload).

Between runs the registry is stopped, its storage restored from a snapshot taken after
the push (no ``.sig`` left, no blob left over) and started again on the same port;
Signet's signature rows are deleted. Signet runs on a fresh PostgreSQL database
(``signet_bench_<pid>``, dropped at the end) so 4 workers can write at once.

Prints images/s, registry requests per image (counted in the registry's access log),
peak RSS during the run (the benchmark process, where Signet and the bare publisher run;
for cosign its own process) and the ratios Signet/bare (target >= 0.8) and Signet/cosign
(target >= 2).
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings_test")

from bench.support import create_database, drop_database

NAMESPACES = 4
THREADS = 4

_ARGS = argparse.ArgumentParser(description=__doc__.split("\n")[0])
_ARGS.add_argument("--images", type=int, default=240)
_ARGS.add_argument("--batch-size", type=int, default=200)
_ARGS.add_argument(
    "--postgres",
    default="postgres://postgres@127.0.0.1:5432",
    help="PostgreSQL server URL (no database name); a fresh database is made there",
)
_ARGS.add_argument("--skip", default="", help="comma-separated runs to skip, e.g. cosign")
ARGS = _ARGS.parse_args() if __name__ == "__main__" else None

if ARGS is not None:
    _DATABASE_URL, _DATABASE_NAME = create_database(ARGS.postgres, "signet_bench")
    os.environ["DATABASE_URL"] = _DATABASE_URL

import django  # noqa: E402

django.setup()

import requests  # noqa: E402
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import padding, rsa  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, connections  # noqa: E402

from bench.backfill_rate import EVENTS_PER_DELIVERY, manifests  # noqa: E402
from kms import services as kms_services  # noqa: E402
from kms.models import AuthorizedService  # noqa: E402
from registry import services as registry_services  # noqa: E402
from registry.client import OCI_MANIFEST, RegistryClient, sha256_digest  # noqa: E402
from registry.models import Instance  # noqa: E402
from registry.worker_clients import forget_worker_clients  # noqa: E402
from signing import backfill  # noqa: E402
from signing import services as signing_services  # noqa: E402
from signing.models import Signature, SignatureStatus  # noqa: E402
from signing.payload import (  # noqa: E402
    OCI_MANIFEST_MEDIA_TYPE,
    SignatureLayer,
    build_payload,
    build_signature_manifest,
    signature_tag,
)
from tests.support.registry_server import RegistryServer  # noqa: E402
from tests.support.verifiers import cosign_path, offline_env  # noqa: E402


@dataclass(frozen=True)
class Image:
    repository: str
    tag: str
    digest: str
    size: int


@dataclass
class Row:
    name: str
    images: int
    seconds: float
    requests: int
    peak_rss_mib: float
    note: str = ""

    @property
    def rate(self) -> float:
        return self.images / self.seconds if self.seconds else 0.0


# -- the registry ------------------------------------------------------------------------


class Registry:
    """One docker-registry with its access log on; ``reset`` brings back the pushed state."""

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="signet-bench-throughput-", dir="/dev/shm"))
        self.snapshot = self.workdir / "snapshot"
        self.server = RegistryServer(
            workdir=self.workdir,
            extra_config={"log": {"accesslog": {"disabled": False}}},
        )

    def start(self) -> None:
        self.server.start()

    def take_snapshot(self) -> None:
        port = self.server.port
        self.server.stop()
        shutil.copytree(self.server.storage_path, self.snapshot)
        self._launch(port)

    def reset(self) -> None:
        port = self.server.port
        self.server.stop()
        shutil.rmtree(self.server.storage_path)
        shutil.copytree(self.snapshot, self.server.storage_path)
        self._launch(port)

    def _launch(self, port: int | None) -> None:
        assert port is not None
        self.server.config_path.write_text(json.dumps(self.server.config(port)))
        if not self.server._launch(port):
            raise RuntimeError(f"port {port} was taken while the registry restarted")

    def requests_so_far(self) -> int:
        """HTTP requests the registry answered (access log lines)."""
        with self.server.log_path.open("rb") as log:
            return sum(1 for line in log if line.startswith(b"127.0.0.1 - - ["))

    def stop(self) -> None:
        self.server.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def push(registry: Registry, count: int) -> list[Image]:
    config, layer, documents = manifests(count)
    client = RegistryClient(registry.server.url)
    images = []
    for n in range(NAMESPACES):
        client.upload_blob(f"bench{n}/app", config)
        client.upload_blob(f"bench{n}/app", layer)

    def push_one(n: int) -> Image:
        repository = f"bench{n % NAMESPACES}/app"
        tag = f"t{n:06d}"
        digest = client.put_manifest(repository, tag, documents[n], OCI_MANIFEST)
        assert digest == sha256_digest(documents[n])
        return Image(repository, tag, digest, len(documents[n]))

    with ThreadPoolExecutor(8) as pool:
        images = list(pool.map(push_one, range(count)))
    client.close()
    return images


# -- measuring -----------------------------------------------------------------------------


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class RssSampler:
    """The highest RSS of this process while the block runs (sampled every 20 ms)."""

    def __enter__(self) -> RssSampler:
        self.peak = rss_mib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_mib())

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mib())


def measure(name: str, registry: Registry, images: int, run: Callable[[], str | None]) -> Row:
    registry.reset()
    before = registry.requests_so_far()
    with RssSampler() as rss:
        started = time.perf_counter()
        note = run()
        seconds = time.perf_counter() - started
    if isinstance(note, tuple):
        note, peak = note
    else:
        peak = rss.peak
    row = Row(name, images, seconds, registry.requests_so_far() - before, peak, note or "")
    print(
        f"  {name:<15} {row.rate:7.1f} images/s  {row.requests / images:5.2f} requests/image"
        f"  peak RSS {row.peak_rss_mib:6.1f} MiB  {row.note}",
        flush=True,
    )
    return row


# -- (a) the bare publisher ---------------------------------------------------------------


class BarePublisher:
    """The least a correct signer does per image, over one keep-alive session."""

    ACCEPT = ", ".join(
        [
            OCI_MANIFEST,
            "application/vnd.oci.image.index.v1+json",
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
        ]
    )

    def __init__(self, base_url: str, domain: str, key: rsa.RSAPrivateKey) -> None:
        self.base_url = base_url
        self.domain = domain
        self.key = key
        self.session = requests.Session()
        self.session.trust_env = False

    def _upload(self, repository: str, data: bytes) -> None:
        start = self.session.post(f"{self.base_url}/v2/{repository}/blobs/uploads/")
        assert start.status_code == 202, start.status_code
        location = start.headers["Location"]
        separator = "&" if "?" in location else "?"
        done = self.session.put(
            f"{location}{separator}digest={sha256_digest(data)}",
            data=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert done.status_code == 201, done.status_code

    def sign(self, image: Image) -> None:
        response = self.session.get(
            f"{self.base_url}/v2/{image.repository}/manifests/{image.digest}",
            headers={"Accept": self.ACCEPT},
        )
        assert response.status_code == 200, response.status_code
        assert sha256_digest(response.content) == image.digest, "manifest does not hash"
        payload = build_payload(
            docker_reference=f"{self.domain}/{image.repository}", manifest_digest=image.digest
        )
        signature = self.key.sign(payload, padding.PKCS1v15(), hashes.SHA256())
        layer = SignatureLayer(payload=payload, signature_b64=base64.b64encode(signature).decode())
        manifest, _config, blobs = build_signature_manifest([layer])
        for blob in blobs.values():
            self._upload(image.repository, blob)
        put = self.session.put(
            f"{self.base_url}/v2/{image.repository}/manifests/{signature_tag(image.digest)}",
            data=manifest,
            headers={"Content-Type": OCI_MANIFEST_MEDIA_TYPE},
        )
        assert put.status_code == 201, put.status_code


def bare(registry: Registry, images: list[Image], threads: int) -> Callable[[], str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def run_slice(part: list[Image]) -> None:
        publisher = BarePublisher(registry.server.url, registry.server.host, key)
        for image in part:
            publisher.sign(image)
        publisher.session.close()

    def run() -> str:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(run_slice, [images[n::threads] for n in range(threads)]))
        return f"{threads} thread(s)"

    return run


# -- (b) Signet's backfill ----------------------------------------------------------------


def signet_setup(registry: Registry, images: list[Image]):
    call_command("migrate", verbosity=0)
    instance, _token = registry_services.create_instance(
        name="bench", backend_url=registry.server.url, default_domain=registry.server.host
    )
    for start in range(0, len(images), EVENTS_PER_DELIVERY):
        events = [
            {
                "id": str(uuid.uuid4()),
                "timestamp": "2026-11-28T12:00:00Z",
                "action": "push",
                "target": {
                    "mediaType": OCI_MANIFEST,
                    "repository": image.repository,
                    "digest": image.digest,
                    "size": image.size,
                    "length": image.size,
                    "tag": image.tag,
                },
                "request": {"method": "PUT"},
                "actor": {},
                "source": {"addr": "bench"},
            }
            for image in images[start : start + EVENTS_PER_DELIVERY]
        ]
        result = registry_services.record_events(instance=instance, envelope={"events": events})
        assert result.processed == len(events), result
    key = kms_services.create_key(alias="bench-signer")
    kms_services.grant_service_authorization(service=AuthorizedService.REGISTRY_SIGNING)
    for n in range(NAMESPACES):
        namespace = instance.namespaces.get(name=f"bench{n}")
        signing_services.create_policy(namespace=namespace, name=f"bench-policy-{n}", key=key)
    return instance


def signet(instance, images: list[Image], workers: int, batch_size: int) -> Callable[[], str]:
    def one_backfill(namespace: str | None) -> backfill.BackfillResult:
        try:
            scope = backfill.plan(instance=instance, namespace=namespace)
            return backfill.backfill(scope, batch_size=batch_size, wait_seconds=0)
        finally:
            connection.close()

    def run() -> str:
        Signature.objects.all().delete()
        if workers == 1:
            results = [one_backfill(None)]
        else:
            with ThreadPoolExecutor(workers) as pool:
                results = list(pool.map(one_backfill, [f"bench{n}" for n in range(workers)]))
        signed = Signature.objects.filter(status=SignatureStatus.SIGNED).count()
        failed = sum(r.failed for r in results)
        assert signed == len(images) and not failed, (signed, failed, results[0].failures[:3])
        return "1 backfill" if workers == 1 else f"{workers} backfills (one per namespace, threads)"

    return run


def _backfill_in_child(job: tuple[int, str, int]) -> tuple[int, int, float]:
    """One namespace's backfill in a forked worker process: (signed, failed, peak RSS MiB).
    The parent's database connection and kept registry sessions are not shared: each
    child opens its own."""
    instance_pk, namespace, batch_size = job
    connections.close_all()
    forget_worker_clients()
    instance = Instance.objects.get(pk=instance_pk)
    try:
        result = backfill.backfill(
            backfill.plan(instance=instance, namespace=namespace),
            batch_size=batch_size,
            wait_seconds=0,
        )
    finally:
        connections.close_all()
    return result.signed, result.failed, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def signet_processes(
    instance, images: list[Image], workers: int, batch_size: int
) -> Callable[[], tuple[str, float]]:
    def run() -> tuple[str, float]:
        Signature.objects.all().delete()
        connections.close_all()
        jobs = [(instance.pk, f"bench{n}", batch_size) for n in range(workers)]
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            results = pool.map(_backfill_in_child, jobs)
        signed = Signature.objects.filter(status=SignatureStatus.SIGNED).count()
        failed = sum(r[1] for r in results)
        assert signed == len(images) and not failed, (signed, failed)
        return f"{workers} backfills (one per namespace, processes)", max(r[2] for r in results)

    return run


# -- (c) cosign sign ------------------------------------------------------------------------


def cosign(registry: Registry, images: list[Image]) -> Callable[[], tuple[str, float]]:
    home = Path(tempfile.mkdtemp(prefix="signet-bench-cosign-"))
    env = offline_env(home / "home", {"COSIGN_PASSWORD": "bench"})
    generated = subprocess.run(
        [cosign_path(), "generate-key-pair", "--output-key-prefix", str(home / "cosign")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert generated.returncode == 0, generated.stderr

    def run() -> tuple[str, float]:
        process = subprocess.Popen(
            [
                cosign_path(),
                "sign",
                "--key",
                str(home / "cosign.key"),
                "--tlog-upload=false",
                "--allow-http-registry",
                "--yes",
                *(f"{registry.server.host}/{i.repository}@{i.digest}" for i in images),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        _, status, usage = os.wait4(process.pid, 0)
        assert status == 0, process.stderr.read().decode()[-2000:] if process.stderr else status
        process.returncode = 0
        return "1 invocation, all images", usage.ru_maxrss / 1024

    return run


# -- the run --------------------------------------------------------------------------------


def print_table(rows: dict[str, Row]) -> None:
    print()
    print("| run | images/s | registry requests / image | peak RSS (MiB) |")
    print("|---|---:|---:|---:|")
    for row in rows.values():
        label = f"{row.name} ({row.note})" if row.note else row.name
        print(
            f"| {label} | {row.rate:.1f} | {row.requests / row.images:.2f} "
            f"| {row.peak_rss_mib:.0f} |"
        )
    print()

    def ratio(a: str, b: str, target: float) -> None:
        if a in rows and b in rows:
            value = rows[a].rate / rows[b].rate
            verdict = "met" if value >= target else "NOT met"
            print(f"{a} / {b}: {value:.2f} (target >= {target:g}: {verdict})")

    ratio("signet x1", "bare x1", 0.8)
    ratio("signet x4", "bare x4", 0.8)
    # 4 deployed workers are 4 Celery processes: the bare publisher's 4 threads share one
    # interpreter lock, Signet's 4 processes do not.
    ratio("signet x4 procs", "bare x4", 0.8)
    ratio("signet x1", "cosign", 2.0)
    # The issue names no worker count for the cosign target: all are shown.
    ratio("signet x4", "cosign", 2.0)
    ratio("signet x4 procs", "cosign", 2.0)


def main() -> None:
    assert ARGS is not None
    skip = set(filter(None, ARGS.skip.split(",")))
    registry = Registry()
    try:
        registry.start()
        images = push(registry, ARGS.images)
        registry.take_snapshot()
        print(
            f"registry {registry.server.url} (storage on /dev/shm), {len(images)} images in "
            f"{NAMESPACES} repositories; database {connection.settings_dict['NAME']}"
        )
        instance = signet_setup(registry, images)
        runs: dict[str, Callable[[], object]] = {
            "bare x1": bare(registry, images, 1),
            "bare x4": bare(registry, images, THREADS),
            "signet x1": signet(instance, images, 1, ARGS.batch_size),
            "signet x4": signet(instance, images, THREADS, ARGS.batch_size),
            "signet x4 procs": signet_processes(instance, images, THREADS, ARGS.batch_size),
        }
        if "cosign" not in skip:
            runs["cosign"] = cosign(registry, images)
        rows = {
            name: measure(name, registry, len(images), run)  # type: ignore[arg-type]
            for name, run in runs.items()
            if name not in skip
        }
        print_table(rows)
        print(
            f"\nbenchmark process peak RSS (getrusage): "
            f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
        )
    finally:
        registry.stop()
        connections.close_all()
        drop_database(ARGS.postgres, _DATABASE_NAME)


if __name__ == "__main__":
    main()
