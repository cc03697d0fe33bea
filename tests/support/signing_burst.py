"""A burst of pushes to a real registry that notifies the live Signet, signed by Celery
workers run as deployed: the pieces the fault tests share (tests/signing/test_celery_crash.py,
tests/signing/test_database_blip.py).

- ``notifying_registry(signet, broker, tmpfs_registry)``: for a fixture, the ``Live`` setup.
- ``push_burst``: distinct tiny images from several client threads, while the test acts.
- ``unsigned_images``: what is not yet signed with a ``.sig`` the registry holds.
- ``start_workers``: deployed workers started side by side; ``signed``, ``wait``.
- ``taken_unacknowledged``/``forget_unacknowledged``: the tasks killed workers had taken.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from kms import services as kms_services
from kms.models import AuthorizedService
from registry import services as registry_services
from registry.client import OCI_MANIFEST, RegistryClient
from registry.models import Manifest
from signing import services
from signing.models import Signature, SignatureStatus
from signing.payload import signature_tag
from tests.factories import make_key
from tests.support.celery_worker import DEPLOYED, Broker, CeleryWorker
from tests.support.live_signet import signet_url
from tests.support.oci import build_image, canonical_json

REPOSITORY = "team/app"


@dataclass
class Live:
    client: RegistryClient
    registry_url: str
    broker: Broker


def notifying_registry(signet: Any, broker: Broker, tmpfs_registry: Any) -> Iterator[Live]:
    """For a fixture: instance ``prod`` whose real registry (on tmpfs) notifies the live
    Signet, which sends the signing to the test's broker; namespace ``team`` has a policy."""
    instance, token = registry_services.create_instance(
        name="prod", backend_url="http://127.0.0.1:9", default_domain="registry.signet.test"
    )
    server = tmpfs_registry(
        notify_url=signet_url(signet) + registry_services.webhook_path(instance=instance),
        notify_token=token,
    )
    registry_services.update_instance(instance=instance, backend_url=server.url)
    kms_services.grant_service_authorization(service=AuthorizedService.REGISTRY_SIGNING)
    namespace = registry_services.create_namespace(instance=instance, name="team")
    services.create_policy(namespace=namespace, name="team-policy", key=make_key("signer"))
    client = RegistryClient(server.url, backoff=0.05)
    yield Live(client, server.url, broker)
    client.close()
    forget_unacknowledged(broker)


def push_burst(
    live: Live, count: int, clients: int, *, first: int = 0, upload: bool = True
) -> list[threading.Thread]:
    """``count`` distinct tiny images (tags ``t<first>``...) pushed by ``clients`` threads,
    each with its own connection; returns the running threads (the burst goes on while
    the test acts). The images share one config and layer, uploaded first (``upload``)."""
    image = build_image(seed=REPOSITORY)
    if upload:
        live.client.upload_blob(REPOSITORY, image.config)
        live.client.upload_blob(REPOSITORY, image.layer)
    base = json.loads(image.manifest)

    def push(numbers: range) -> None:
        client = RegistryClient(live.registry_url, backoff=0.05)
        try:
            for number in numbers:
                manifest = {**base, "annotations": {"org.signet.test.n": f"t{number}"}}
                client.put_manifest(
                    REPOSITORY, f"t{number}", canonical_json(manifest), OCI_MANIFEST
                )
        finally:
            client.close()

    threads = [
        threading.Thread(target=push, args=(range(first + n, first + count, clients),), daemon=True)
        for n in range(clients)
    ]
    for thread in threads:
        thread.start()
    return threads


def unsigned_images(client: RegistryClient, expected: int) -> list[str]:
    """What is not signed yet: pushes not recorded, rows not signed, or signed rows whose
    ``.sig`` the registry does not hold."""
    recorded = list(Manifest.objects.select_related("repository"))
    missing = (
        [f"{expected - len(recorded)} push(es) not recorded"] if len(recorded) < expected else []
    )
    rows = {row.manifest_id: row for row in Signature.objects.all()}
    for manifest in recorded:
        row = rows.get(manifest.pk)
        if row is None or row.status != SignatureStatus.SIGNED:
            missing.append(f"{manifest.digest[:19]} {row.status if row else 'no row'}")
            continue
        sig = client.head_manifest(REPOSITORY, signature_tag(manifest.digest))
        if sig is None or sig.digest != row.sig_manifest_digest:
            missing.append(f"{manifest.digest[:19]} signed but no .sig")
    return missing


def taken_unacknowledged(broker: Broker) -> int:
    """ "Sign these rows" tasks of the test's queue that a worker took and never
    acknowledged (kombu keeps them in the ``unacked`` hash until the visibility timeout
    gives them back)."""
    with broker.client() as redis:
        entries = [json.loads(entry) for entry in redis.hvals("unacked")]
    return sum(
        1
        for message, _exchange, routing_key in entries
        if routing_key == broker.queue
        and message["headers"]["task"] == "signing.tasks.sign_signatures"
    )


def forget_unacknowledged(broker: Broker) -> None:
    """Drop what the killed workers took from the test's queue: Redis would give it back
    to a queue nobody reads once the visibility timeout passed."""
    with broker.client() as redis:
        for tag, entry in redis.hgetall("unacked").items():
            if json.loads(entry)[2] == broker.queue:
                redis.hdel("unacked", tag)
                redis.zrem("unacked_index", tag)


def wait(predicate: Callable[[], bool], seconds: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


def start_workers(start: Callable[..., CeleryWorker], count: int) -> list[CeleryWorker]:
    """``count`` workers as deployed, started side by side."""
    workers = [start(DJANGO_SETTINGS_MODULE=DEPLOYED, wait=False) for _ in range(count)]
    return [worker.wait_until_ready() for worker in workers]


def signed() -> int:
    return Signature.objects.filter(status=SignatureStatus.SIGNED).count()
