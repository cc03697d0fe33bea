"""Registry instances (created, webhook token rotated) and the registry webhook as an actor."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from accounts.models import Role
from registry import services as registry_services
from registry.models import Instance
from signing.models import Signature, SignatureStatus
from tests.accounts.support import grant
from tests.audit.conftest import REGISTRY_SECRET
from tests.audit.support import (
    EVENTS_TYPE,
    REPOSITORY,
    actions,
    events,
    fake_digest,
    push_event,
    the_event,
    token_client,
)
from tests.factories import make_user


@pytest.mark.django_db
def test_creating_an_instance_records_its_settings_but_no_credential(instance_and_token):
    instance, token = instance_and_token

    event = the_event("registry.instance.created")
    assert (event.object_type, event.object_id, event.object_repr) == (
        "registry.instance",
        str(instance.pk),
        "audited",
    )
    # About the whole instance, not one of its namespaces.
    assert (event.instance_name, event.namespace_name) == ("audited", "")
    assert event.details["auth_type"] == "basic"
    assert event.details["username"] == "robot"
    assert event.details["backend_url"] == instance.backend_url
    dumped = json.dumps([event.details, event.changes, event.object_repr])
    assert REGISTRY_SECRET not in dumped
    assert token not in dumped
    assert instance.webhook_token_hash not in dumped


@pytest.mark.django_db
def test_rotating_the_webhook_token_records_the_rotation_not_the_token(instance_and_token):
    instance, old = instance_and_token

    new = registry_services.rotate_webhook_token(instance=instance)

    event = the_event("registry.instance.webhook_token_rotated")
    assert (event.object_id, event.instance_name) == (str(instance.pk), "audited")
    dumped = json.dumps([event.details, event.changes, event.object_repr])
    for secret in (old, new, Instance.objects.get(pk=instance.pk).webhook_token_hash):
        assert secret not in dumped


@pytest.mark.django_db
def test_api_create_and_rotate_are_recorded_for_the_token_user():
    admin = make_user("registry-admin", perms=["registry.add_instance", "registry.change_instance"])
    api = token_client(admin, REMOTE_ADDR="198.51.100.20")

    created = api.post(
        "/api/v1/registry/instances/",
        {
            "name": "from-api",
            "backend_url": "http://127.0.0.1:1",
            "default_domain": "r.example.test",
            "auth_type": "bearer",
            "secret": "api-secret-7781",
        },
        format="json",
    )
    # Instance management is a plain permission, but on instances in the user's scope.
    grant(admin, Instance.objects.get(name="from-api"), role=Role.READER)
    rotated = api.post(f"/api/v1/registry/instances/{created.json()['id']}/rotate-webhook-token/")

    assert (created.status_code, rotated.status_code) == (201, 200)
    for action in ("registry.instance.created", "registry.instance.webhook_token_rotated"):
        event = the_event(action)
        assert (event.actor_type, event.actor_id, event.source_ip) == (
            "user",
            admin.pk,
            "198.51.100.20",
        )
        assert event.instance_name == "from-api"
        dumped = json.dumps([event.details, event.changes])
        assert "api-secret-7781" not in dumped
        assert created.json()["webhook_token"] not in dumped
        assert rotated.json()["webhook_token"] not in dumped


@pytest.mark.django_db
def test_admin_token_rotation_is_recorded_for_the_session_user(admin_client, admin_user, instance):
    response = admin_client.post(
        reverse("admin:registry_instance_rotate_webhook_token", args=[instance.pk])
    )

    assert response.status_code == 200
    event = the_event("registry.instance.webhook_token_rotated")
    assert (event.actor_type, event.actor_id, event.source_ip) == (
        "user",
        admin_user.pk,
        "127.0.0.1",
    )


@pytest.mark.django_db(transaction=True)
def test_signing_failures_caused_by_a_webhook_delivery_name_the_registry(
    client, instance_and_token, policy
):
    """Inline dispatch: the push's signing runs after the webhook's transaction commits,
    still inside the request (with thread dispatch it is background work: ``system``)."""
    instance, token = instance_and_token  # its registry is not running
    before = actions()
    digest = fake_digest("webhook-push")

    response = client.post(
        reverse("registry-webhook", kwargs={"instance_name": instance.name}),
        data=json.dumps({"events": [push_event(REPOSITORY, digest, tag="v1")]}),
        content_type=EVENTS_TYPE,
        HTTP_AUTHORIZATION=f"Bearer {token}",
        REMOTE_ADDR="192.0.2.80",
    )

    assert response.status_code == 200, response.content
    signature = Signature.objects.get(manifest__digest=digest)
    assert signature.status == SignatureStatus.FAILED
    assert actions() == [*before, "signing.signature.failed"]
    failed = events("signing.signature.failed")[0]
    assert (failed.actor_type, failed.actor_label, failed.actor_id) == (
        "registry-webhook",
        "registry:audited",
        None,
    )
    assert failed.source_ip == "192.0.2.80"
    assert (failed.object_type, failed.object_id) == ("signing.signature", str(signature.pk))
    assert failed.object_repr == f"{REPOSITORY}@{digest}"
    assert failed.instance_name == "audited"
    # The worker asks the registry for the image before anything else.
    assert failed.details["code"] == "InternalError.RegistryUnavailable"
    assert failed.details["trigger"] == "push"
    assert failed.details["policy"] == "team-policy"


@pytest.mark.django_db
def test_a_refused_webhook_delivery_records_nothing(client, instance, policy):
    before = actions()

    response = client.post(
        reverse("registry-webhook", kwargs={"instance_name": instance.name}),
        data=json.dumps({"events": [push_event(REPOSITORY, fake_digest("x"), tag="v1")]}),
        content_type=EVENTS_TYPE,
        HTTP_AUTHORIZATION="Bearer wrong-token",
    )

    assert response.status_code == 401
    assert actions() == before
    assert not Signature.objects.exists()
