"""Namespaces created and deleted leave one audit event each, whoever made them: a user
through the API or the admin, the registry webhook (a push into a new namespace), or
``manage.py sync_registry``."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.urls import reverse

from accounts.models import Role
from registry import services as registry_services
from registry.models import Namespace
from tests.accounts.support import grant
from tests.audit.support import (
    EVENTS_TYPE,
    actions,
    events,
    fake_digest,
    push_event,
    record_push,
    the_event,
    token_client,
)
from tests.factories import make_user
from tests.support.oci import push_image

pytestmark = pytest.mark.django_db

NAMESPACES = "/api/v1/registry/namespaces/"


def test_the_api_records_who_created_and_deleted_a_namespace(instance):
    admin = make_user("ns-admin", is_superuser=True, is_staff=True)
    api = token_client(admin, REMOTE_ADDR="198.51.100.30")

    created = api.post(
        NAMESPACES,
        {"instance": instance.pk, "name": "apps", "description": "the apps"},
        format="json",
    )
    namespace_id = created.json()["id"]
    record_push(instance, "apps/web", "v1", fake_digest("apps-web"))
    deleted = api.delete(f"{NAMESPACES}{namespace_id}/")

    assert (created.status_code, deleted.status_code) == (201, 204)
    assert not Namespace.objects.filter(pk=namespace_id).exists()
    made, gone = the_event("registry.namespace.created"), the_event("registry.namespace.deleted")
    for event in (made, gone):
        assert (event.actor_type, event.actor_id, event.source_ip) == (
            "user",
            admin.pk,
            "198.51.100.30",
        )
        assert (event.object_type, event.object_id, event.object_repr) == (
            "registry.namespace",
            str(namespace_id),
            "apps",
        )
        assert (event.instance_name, event.instance_id, event.namespace_name) == (
            "audited",
            instance.pk,
            "apps",
        )
    assert made.details == {"description": "the apps"}
    assert gone.details == {"repositories": 1, "manifests": 1, "memberships_narrowed": 0}


def test_the_admin_records_who_created_and_deleted_a_namespace(admin_client, admin_user, instance):
    added = admin_client.post(
        reverse("admin:registry_namespace_add"),
        {"instance": instance.pk, "name": "tools", "description": ""},
    )
    namespace = Namespace.objects.get(instance=instance, name="tools")
    narrowed = make_user("tools-reader", is_staff=True)
    grant(narrowed, instance, role=Role.READER, namespaces=[namespace])
    removed = admin_client.post(
        reverse("admin:registry_namespace_delete", args=[namespace.pk]), {"post": "yes"}
    )

    assert (added.status_code, removed.status_code) == (302, 302)
    assert not Namespace.objects.filter(pk=namespace.pk).exists()
    for action in ("registry.namespace.created", "registry.namespace.deleted"):
        event = the_event(action)
        assert (event.actor_type, event.actor_id, event.source_ip) == (
            "user",
            admin_user.pk,
            "127.0.0.1",
        )
        assert (event.object_id, event.instance_id, event.namespace_name) == (
            str(namespace.pk),
            instance.pk,
            "tools",
        )
    assert the_event("registry.namespace.deleted").details == {
        "repositories": 0,
        "manifests": 0,
        "memberships_narrowed": 1,
    }


def test_a_push_into_a_new_namespace_records_it_as_created_by_the_webhook(
    client, instance_and_token
):
    instance, token = instance_and_token
    assert not events("registry.namespace.created")
    envelope = {
        "events": [
            push_event("fresh/app", fake_digest("fresh-1"), tag="v1"),
            push_event("fresh/other", fake_digest("fresh-2"), tag="v1"),
        ]
    }

    response = client.post(
        reverse("registry-webhook", kwargs={"instance_name": instance.name}),
        data=json.dumps(envelope),
        content_type=EVENTS_TYPE,
        HTTP_AUTHORIZATION=f"Bearer {token}",
        REMOTE_ADDR="192.0.2.90",
    )
    again = client.post(
        reverse("registry-webhook", kwargs={"instance_name": instance.name}),
        data=json.dumps({"events": [push_event("fresh/app", fake_digest("fresh-3"))]}),
        content_type=EVENTS_TYPE,
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )

    assert (response.status_code, again.status_code) == (200, 200)
    namespace = Namespace.objects.get(instance=instance, name="fresh")
    event = the_event("registry.namespace.created")  # once, for the first repository
    assert (event.actor_type, event.actor_label, event.actor_id, event.source_ip) == (
        "registry-webhook",
        "registry:audited",
        None,
        "192.0.2.90",
    )
    assert (event.object_id, event.instance_id, event.namespace_name) == (
        str(namespace.pk),
        instance.pk,
        "fresh",
    )
    assert event.details == {"source": "webhook", "repository": "fresh/app"}


@pytest.mark.registry_server
def test_sync_records_the_namespaces_it_creates_and_a_dry_run_records_none(
    live_instance, registry_client
):
    push_image(registry_client, "synced/app", "v1", seed="synced-app")

    call_command("sync_registry", "live", "--dry-run", stdout=io.StringIO())
    assert not Namespace.objects.filter(name="synced").exists()
    assert "registry.namespace.created" not in actions()
    call_command("sync_registry", "live", stdout=io.StringIO())

    namespace = Namespace.objects.get(instance=live_instance, name="synced")
    event = the_event("registry.namespace.created")
    assert (event.actor_type, event.actor_label) == ("command", "manage.py sync_registry")
    assert (event.object_id, event.instance_id, event.namespace_name) == (
        str(namespace.pk),
        live_instance.pk,
        "synced",
    )
    assert event.details == {"source": "sync", "repository": "synced/app"}


def test_a_refused_namespace_creation_records_nothing(instance, namespace):
    before = actions()
    admin = make_user("ns-admin", is_superuser=True, is_staff=True)

    response = token_client(admin).post(
        NAMESPACES, {"instance": instance.pk, "name": namespace.name}, format="json"
    )

    assert response.status_code == 409
    assert actions() == before
    assert Namespace.objects.filter(instance=instance).count() == 1


def test_a_narrowed_member_reads_its_namespaces_events_only(instance, namespace):
    other = registry_services.create_namespace(instance=instance, name="other")
    member = make_user("team-member", is_staff=True)
    grant(member, instance, role=Role.READER, namespaces=[namespace])

    response = token_client(member).get(
        "/api/v1/audit/events/", {"action": "registry.namespace.created"}
    )

    assert response.status_code == 200
    assert [row["object_id"] for row in response.json()["results"]] == [str(namespace.pk)]
    assert {event.namespace_name for event in events("registry.namespace.created")} == {
        namespace.name,
        other.name,
    }
