"""What /metrics counts, after real pushes to a real registry are signed or fail.

In this process (no PROMETHEUS_MULTIPROC_DIR) the counters are the test process's own, so
each test compares a scrape before and after. The last test runs Signet under gunicorn
(two workers sharing a metrics directory) notified by a real registry, as production does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from kms import services as kms_services
from registry import services as registry_services
from registry.client import RegistryClient
from registry.models import Instance
from signing import services
from signing.models import Signature, SignatureStatus
from signing.services.worker import ensure_pending
from tests.signing.conftest import (
    EVENTS_TYPE,
    REPOSITORY,
    Pushed,
    dead_url,
    point_instance_at,
)
from tests.support import live_signet
from tests.support.gunicorn import METRICS_TOKEN, Gunicorn
from tests.support.metrics import Scrape
from tests.support.oci import push_image

pytestmark = [pytest.mark.registry_server, pytest.mark.django_db(transaction=True)]

TOKEN = "scrape-token-" + "s" * 32


@pytest.fixture
def scrape(settings, client: Client) -> Callable[[], Scrape]:
    settings.SIGNET_METRICS_TOKEN = TOKEN

    def scrape() -> Scrape:
        answer = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        assert answer.status_code == 200
        return Scrape.parse(answer.content.decode())

    return scrape


def deliver(client: Client, instance: Instance, token: str, pushed: Pushed) -> int:
    """POST the push's notification to the webhook, as the registry does."""
    answer = client.post(
        registry_services.webhook_path(instance=instance),
        data=json.dumps(pushed.envelope),
        content_type=EVENTS_TYPE,
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    return answer.status_code


def test_a_push_through_the_webhook_counts_the_event_the_signature_its_latency_and_kms_time(
    policy, instance, webhook_token, client, scrape, push_image_event
):
    before = scrape()
    pushed = push_image_event(tag="v1", seed="metrics", record=False)

    assert deliver(client, instance, webhook_token, pushed) == 200  # signed inline
    assert deliver(client, instance, webhook_token, pushed) == 200  # redelivered
    assert deliver(client, instance, "not-the-token", pushed) == 401

    after = scrape()
    assert Signature.objects.get(manifest__digest=pushed.digest).status == SignatureStatus.SIGNED

    def moved(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert moved("signet_webhook_events_total", outcome="recorded") == 1
    assert moved("signet_webhook_events_total", outcome="duplicate") == 1
    assert moved("signet_webhook_events_total", outcome="rejected") == 1
    assert moved("signet_webhook_events_total", outcome="ignored") == 0
    assert moved("signet_signatures_signed_total", trigger="push") == 1
    assert moved("signet_sign_latency_seconds_count") == 1
    assert 0 < moved("signet_sign_latency_seconds_sum") < 60
    assert moved("signet_kms_sign_seconds_count", backend="local") == 1
    assert after.value("signet_signatures_pending") == 0


def test_failures_are_counted_by_code_and_registry_errors_by_kind(
    policy, key, instance, registry_server, scrape, push_image_event
):
    before = scrape()
    kms_services.disable_key(key_id=str(key.key_id))
    push_image_event(tag="v1", seed="kms-down")
    kms_services.enable_key(key_id=str(key.key_id))
    point_instance_at(instance, dead_url())
    registry_down = push_image_event(tag="v2", seed="registry-down", record=False)
    registry_services.record_events(instance=instance, envelope=registry_down.envelope)

    after = scrape()

    def moved(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert moved("signet_signatures_failed_total", code="ResourceUnavailable.CmkDisabled") == 1
    assert moved("signet_signatures_failed_total", code="InternalError.RegistryUnavailable") == 1
    assert (
        moved("signet_registry_request_errors_total", kind="InternalError.RegistryUnavailable") == 1
    )
    assert moved("signet_signatures_signed_total", trigger="push") == 0
    # Timed even when it fails: the disabled key's sign call.
    assert moved("signet_kms_sign_seconds_count", backend="local") == 1


def test_pending_rows_are_counted_with_the_oldest_ones_age_at_scrape_time(
    policy, instance, scrape, push_image_event
):
    first = push_image_event(tag="v1", seed="waiting-1", record=False)
    second = push_image_event(tag="v2", seed="waiting-2", record=False)
    manifests = [
        registry_services.record_manifest(
            instance=instance,
            repository=REPOSITORY,
            digest=pushed.digest,
            media_type="application/vnd.oci.image.manifest.v1+json",
            size=None,
        )
        for pushed in (first, second)
    ]
    ids = ensure_pending([(policy, m) for m in manifests], trigger="push", actor=None)
    Signature.objects.filter(pk=ids[0]).update(created_at=timezone.now() - timedelta(minutes=5))

    waiting = scrape()

    assert waiting.value("signet_signatures_pending") == 2
    assert 300 <= waiting.value("signet_signatures_oldest_pending_age_seconds") < 360


@pytest.mark.processes
def test_under_gunicorn_a_real_push_is_counted_across_the_workers(
    registry_server_factory, gunicorn: Gunicorn, key, authorized
):
    instance, token = registry_services.create_instance(
        name="served", backend_url="http://127.0.0.1:9", default_domain="registry.signet.test"
    )
    server = registry_server_factory(
        notify_url=gunicorn.url + registry_services.webhook_path(instance=instance),
        notify_token=token,
    )
    registry_services.update_instance(instance=instance, backend_url=server.url)
    namespace = registry_services.create_namespace(instance=instance, name="team")
    services.create_policy(namespace=namespace, name="team-policy", key=key)
    client = RegistryClient(server.url, backoff=0.05)
    try:
        digests = [push_image(client, "team/app", f"v{n}", seed=f"served-{n}") for n in range(3)]
    finally:
        client.close()

    live_signet.wait_for(
        lambda: Signature.objects.filter(status=SignatureStatus.SIGNED).count() == 3,
        "three signatures made by gunicorn's workers",
        seconds=60,
    )
    # Several scrapes: each may reach either worker, and each sums both workers' files.
    scrapes = [
        Scrape.parse(
            gunicorn.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
        )
        for _ in range(4)
    ]

    assert len(digests) == 3
    for scrape in scrapes:
        assert scrape.value("signet_signatures_signed_total", trigger="push") == 3
        assert scrape.value("signet_sign_latency_seconds_count") == 3
        assert scrape.value("signet_kms_sign_seconds_count", backend="local") == 3
        assert scrape.value("signet_webhook_events_total", outcome="recorded") >= 3
        assert scrape.value("signet_signatures_pending") == 0
    assert list(gunicorn.metrics_dir.glob("counter_*.db"))
