"""The webhook's cost per push event, pinned.

The registry sends its notifications to an endpoint one at a time, waiting for each
answer: the webhook's own time per event sets the pace at which Signet hears of every push
in a burst (``bench/burst.py``). These tests count the database queries of one delivery
as production runs it (its own transaction, ``SIGNING_DISPATCH = "celery"`` on the real
Redis), so a change that adds round trips to the hot path fails here, and prove the
signing is handed to the broker only once the rows are committed, as one task.
"""

from __future__ import annotations

import base64
import json
import uuid

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from kms import services as kms_services
from kms.models import AuthorizedService
from registry import services as registry_services
from registry.models import EventStatus, Instance, RegistryEvent, Tag
from signing import services
from signing.models import Signature, SignatureStatus
from signing.payload import signature_tag
from tests.factories import make_instance, make_key
from tests.registry import events as ev
from tests.signing.test_concurrency import THREADS, run_concurrently
from tests.support.celery_worker import Broker

pytestmark = pytest.mark.django_db(transaction=True)

# One push by tag into a repository Signet knows, in a namespace with a signing policy:
# the instance (token check); BEGIN; INSERT the event row unless redelivered; the
# repository; INSERT manifest; link an index waiting for it; INSERT tag; tag history;
# SAVEPOINT, the policies, INSERT the pending signature, RELEASE (the push handler);
# COMMIT. (22 with a look-up for redelivery and get_or_create-like paths for manifest,
# tag and signature row.)
PUSH_QUERIES = 13
# The push of a ``.sig`` artifact (each image Signet signs causes one), recorded as
# ignored: the instance, then INSERT the event row (5 with a transaction around a look-up).
SIGNATURE_TAG_QUERIES = 2


@pytest.fixture
def webhook(settings, celery_broker: Broker):
    """POST one event to instance ``burst``'s webhook; namespace ``team`` is signed."""
    instance, token = make_instance("burst")
    kms_services.grant_service_authorization(service=AuthorizedService.REGISTRY_SIGNING)
    namespace = registry_services.create_namespace(instance=instance, name="team")
    services.create_policy(namespace=namespace, name="team-policy", key=make_key("signer"))
    client = Client()

    def post(event: dict):
        response = client.post(
            f"/api/v1/registry/instances/{instance.name}/events/",
            data=json.dumps(ev.envelope(event)),
            content_type=ev.EVENTS_TYPE,
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 200, response.content
        return response

    post(ev.push("team/app", "v0", ev.digest_of("first")))  # the repository exists now
    return post


def _queued_signature_ids(broker: Broker) -> list[list[int]]:
    """The row ids of each ``sign_signatures`` task waiting in the broker's queue."""
    with broker.client() as client:
        messages = [json.loads(raw) for raw in client.lrange(broker.queue, 0, -1)]
    ids = []
    for message in messages:
        assert message["headers"]["task"] == "signing.tasks.sign_signatures"
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        ids.append(args[0])
    return ids


def test_a_push_into_a_signed_namespace_costs_the_webhook_thirteen_queries(webhook, celery_broker):
    with celery_broker.client() as client:
        client.delete(celery_broker.queue)  # the first push's task
    digest = ev.digest_of("burst")

    with CaptureQueriesContext(connection) as queries:
        webhook(ev.push("team/app", "v1", digest))

    sql = "\n".join(query["sql"][:160] for query in queries.captured_queries)
    assert len(queries.captured_queries) == PUSH_QUERIES, sql
    row = Signature.objects.get(manifest__digest=digest)
    assert (row.status, row.trigger, row.attempts) == (SignatureStatus.PENDING, "push", 0)
    assert Tag.objects.get(name="v1").manifest.digest == digest
    # Sent once the rows were committed: one task naming the new row.
    assert _queued_signature_ids(celery_broker) == [[row.pk]]


def test_signets_own_signature_push_costs_the_webhook_two_queries(webhook, celery_broker):
    digest = ev.digest_of("first")
    event = ev.push("team/app", signature_tag(digest), ev.digest_of("sig"))

    with CaptureQueriesContext(connection) as queries:
        body = webhook(event).json()

    sql = "\n".join(query["sql"][:160] for query in queries.captured_queries)
    assert len(queries.captured_queries) == SIGNATURE_TAG_QUERIES, sql
    assert (body["processed"], body["ignored"]) == (0, 1)
    recorded = RegistryEvent.objects.get(event_id=event["id"])
    assert (recorded.status, recorded.reason) == (EventStatus.IGNORED, "signature artifact tag")

    again = webhook(event).json()  # the registry redelivers it

    assert (again["ignored"], again["duplicates"]) == (0, 1)
    assert RegistryEvent.objects.filter(event_id=event["id"]).count() == 1


def test_a_push_moving_a_tag_onto_a_known_image_signs_it_if_its_row_is_missing(
    webhook, celery_broker
):
    """The slow path the one-statement inserts leave to ``ensure_pending``: the manifest
    exists, so the push handler sees only the moved tag."""
    known = ev.digest_of("first")
    Signature.objects.filter(manifest__digest=known).delete()
    with celery_broker.client() as client:
        client.delete(celery_broker.queue)

    webhook(ev.push("team/app", "latest", known))

    row = Signature.objects.get(manifest__digest=known)
    assert row.status == SignatureStatus.PENDING
    assert Tag.objects.get(name="latest").manifest.digest == known
    assert _queued_signature_ids(celery_broker) == [[row.pk]]


@pytest.mark.parametrize("same_event_id", [True, False], ids=["redeliveries", "new-event-ids"])
def test_one_push_delivered_by_six_threads_at_once_is_recorded_and_queued_once(
    webhook, celery_broker, same_event_id
):
    """The one-statement inserts settle races by the unique constraints (PostgreSQL makes
    the later INSERT wait for the first to commit): one event processed, one manifest, one
    tag, one pending signature row, one task."""
    with celery_broker.client() as client:
        client.delete(celery_broker.queue)
    instance = Instance.objects.get(name="burst")
    digest = ev.digest_of("raced")
    shared = ev.push("team/app", "raced", digest)

    def deliver(_number: int):
        event = shared if same_event_id else {**shared, "id": str(uuid.uuid4())}
        return registry_services.record_events(instance=instance, envelope=ev.envelope(event))

    outcomes = run_concurrently(THREADS, deliver)

    assert all(kind == "ok" for kind, _ in outcomes), outcomes
    results = [result for _, result in outcomes]
    assert sum(result.manifests_created for result in results) == 1
    assert sum(result.tags_created for result in results) == 1
    if same_event_id:
        assert sum(result.duplicates for result in results) == THREADS - 1
    else:
        assert RegistryEvent.objects.filter(reason="already recorded").count() == THREADS - 1
    row = Signature.objects.get(manifest__digest=digest)
    assert Tag.objects.get(name="raced").manifest_id == row.manifest_id
    assert _queued_signature_ids(celery_broker) == [[row.pk]]
