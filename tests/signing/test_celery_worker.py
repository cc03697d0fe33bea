"""The Celery path (``SIGNING_DISPATCH = "celery"``): a real registry notifies the live
Signet (this test process: the web process), whose webhook records the push and sends a
task to a real Redis; a real ``celery -A config worker`` process on the test database
signs it.

The web process cannot sign here: its KMS client is replaced by one that records the
call and refuses. So a signed row and a ``.sig`` in the registry are the worker's work,
and the worker's own log names the image it signed.

Marked ``processes`` (each test starts a worker process); deselect with
``-m "not processes"`` for a quick run.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from kms import services as kms_services
from kms.models import AuthorizedService, Key
from registry import services as registry_services
from registry.client import RegistryClient
from registry.models import Instance
from signing import services
from signing.models import Signature, SignatureStatus
from signing.payload import signature_tag
from signing.services import worker as signing_worker
from tests.factories import make_key
from tests.signing.conftest import layer_fingerprints
from tests.support import live_signet
from tests.support.celery_worker import Broker, CeleryWorker
from tests.support.live_signet import signet_url
from tests.support.oci import push_image

pytestmark = [
    pytest.mark.registry_server,
    pytest.mark.processes,
    pytest.mark.django_db(transaction=True),
]

WAIT_SECONDS = 60.0


@dataclass
class Live:
    instance: Instance
    client: RegistryClient
    key: Key
    broker: Broker
    web_kms_calls: list[str]


@pytest.fixture
def live(signet, celery_broker, registry_server_factory, monkeypatch) -> Iterator[Live]:
    """Instance ``prod`` whose real registry notifies the live Signet, which sends the
    signing to the test's broker; namespace ``team`` has a policy."""
    web_kms_calls: list[str] = []

    def refusing_kms_client(**kwargs):
        web_kms_calls.append(repr(kwargs))
        raise AssertionError("the web process must not sign with SIGNING_DISPATCH=celery")

    monkeypatch.setattr(signing_worker, "get_kms_client", refusing_kms_client)
    instance, token = registry_services.create_instance(
        name="prod", backend_url="http://127.0.0.1:9", default_domain="registry.signet.test"
    )
    server = registry_server_factory(
        notify_url=signet_url(signet) + registry_services.webhook_path(instance=instance),
        notify_token=token,
    )
    instance = registry_services.update_instance(instance=instance, backend_url=server.url)
    kms_services.grant_service_authorization(service=AuthorizedService.REGISTRY_SIGNING)
    key = make_key("signer")
    namespace = registry_services.create_namespace(instance=instance, name="team")
    services.create_policy(namespace=namespace, name="team-policy", key=key)
    client = RegistryClient(server.url, backoff=0.05)
    yield Live(instance, client, key, celery_broker, web_kms_calls)
    client.close()


def _row(digest: str) -> Signature | None:
    return Signature.objects.filter(manifest__digest=digest).first()


def _signed(digest: str) -> bool:
    return Signature.objects.filter(manifest__digest=digest, status=SignatureStatus.SIGNED).exists()


def _assert_signed_by_the_worker(live: Live, worker: CeleryWorker, digest: str) -> None:
    live_signet.wait_for(functools.partial(_signed, digest), "the worker to sign", seconds=60)
    row = _row(digest)
    assert row is not None
    published = live.client.head_manifest("team/app", signature_tag(digest))
    assert published is not None, "no .sig in the registry"
    assert published.digest == row.sig_manifest_digest
    assert layer_fingerprints(live.client, "team/app", digest) == [live.key.public_key_fingerprint]
    assert row.attempts == 1
    assert f"image signed team/app@{digest}" in worker.log(), worker.log()[-3000:]
    assert live.web_kms_calls == [], "the web process tried to sign"


def test_a_push_is_signed_by_a_celery_worker_process_not_the_web_process(
    live, start_celery_worker: Callable[..., CeleryWorker]
):
    worker = start_celery_worker()

    digest = push_image(live.client, "team/app", "v1", seed="celery")

    _assert_signed_by_the_worker(live, worker, digest)
    assert "signing.tasks.sign_signatures" in worker.log()
    assert live.broker.waiting() == 0


def test_a_push_while_no_worker_runs_stays_pending_and_is_signed_once_a_worker_starts(
    live, start_celery_worker: Callable[..., CeleryWorker]
):
    digest = push_image(live.client, "team/app", "v1", seed="no-worker")
    live_signet.wait_for(lambda: live.broker.waiting() == 1, "the task in the queue", seconds=30)

    row = _row(digest)
    assert row is not None, "the push was not recorded"
    assert (row.status, row.attempts) == (SignatureStatus.PENDING, 0)
    assert live.client.head_manifest("team/app", signature_tag(digest)) is None

    worker = start_celery_worker()

    _assert_signed_by_the_worker(live, worker, digest)
    assert live.broker.waiting() == 0
