"""Audit scoping keys on the instance's id: an instance deleted and created again under the
same name is another instance, and its members do not read the old one's events.

Run on PostgreSQL too (DATABASE_URL): the append-only trigger lives there, and deleting an
instance must leave its events untouched (no foreign key, no cascade, no update).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import DatabaseError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django.urls import reverse

from accounts.models import Role
from audit import services as audit
from audit.models import AuditEvent
from audit.scoping import visible_events
from registry import services as registry_services
from registry.models import Instance
from tests.accounts.support import grant
from tests.audit.support import DOMAIN, token_client
from tests.factories import make_user
from tests.support.registry_server import free_port

pytestmark = pytest.mark.django_db

EVENTS = "/api/v1/audit/events/"


def _create(name: str) -> Instance:
    # Domain names are unique across instances: "prod" (either incarnation) has DOMAIN.
    domain = DOMAIN if name == "prod" else f"{name}.{DOMAIN}"
    instance, _token = registry_services.create_instance(
        name=name, backend_url=f"http://127.0.0.1:{free_port()}", default_domain=domain
    )
    return instance


def _api_ids(user, **params) -> list[int]:
    response = token_client(user).get(EVENTS, {"limit": 500, **params})
    assert response.status_code == 200, response.content
    return sorted(row["id"] for row in response.json()["results"])


@pytest.fixture
def recreated():
    """``prod`` with a namespace-level and an instance-wide event, deleted; then a new
    ``prod`` with a reader (whole instance) and a reader narrowed to ``team``."""
    old = _create("prod")
    registry_services.rotate_webhook_token(instance=old)
    old_team = audit.record(
        "signing.policy.created",
        object_type="signing.signingpolicy",
        object_id="1",
        object_repr="old-team-policy",
        instance_name="prod",
        namespace_name="team",
    )
    old_events = list(AuditEvent.objects.filter(instance_name="prod").order_by("id"))
    assert len(old_events) == 3 and old_team in old_events
    old_id = old.pk
    registry_services.delete_instance(instance=old)
    assert not Instance.objects.filter(pk=old_id).exists()
    # The deletion is the old instance's last event (recorded while the row still existed).
    old_events = list(AuditEvent.objects.filter(instance_name="prod").order_by("id"))
    assert old_events[-1].action == "registry.instance.deleted"
    assert {event.instance_id for event in old_events} == {old_id}

    new = _create("prod")
    team = registry_services.create_namespace(instance=new, name="team")
    new_team = audit.record(
        "signing.policy.created",
        object_type="signing.signingpolicy",
        object_id="2",
        object_repr="new-team-policy",
        instance_name="prod",
        namespace_name="team",
    )
    reader = make_user("prod-reader", is_staff=True)
    grant(reader, new, role=Role.READER)
    narrowed = make_user("team-reader", is_staff=True)
    grant(narrowed, new, role=Role.READER, namespaces=[team])
    new_events = list(
        AuditEvent.objects.filter(instance_name="prod").exclude(pk__in=[e.pk for e in old_events])
    )
    return {
        "old_id": old_id,
        "new": new,
        "old_events": old_events,
        "new_events": new_events,
        "old_team": old_team,
        "new_team": new_team,
        "reader": reader,
        "narrowed": narrowed,
    }


def test_a_re_created_instances_members_do_not_read_the_old_instances_events(recreated):
    reader, old_events = recreated["reader"], recreated["old_events"]

    rows = _api_ids(reader)

    assert rows == sorted(event.pk for event in recreated["new_events"])
    assert {"registry.instance.created", "signing.policy.created"} <= {
        event.action for event in recreated["new_events"]
    }
    api = token_client(reader)
    for event in old_events:
        response = api.get(f"{EVENTS}{event.pk}/")
        assert response.status_code == 404, event.action
    # Filtering by the name narrows within the scope: still not the old events.
    assert _api_ids(reader, instance="prod") == rows
    assert _api_ids(reader, action="registry.instance.webhook_token_rotated") == []


def test_the_events_store_which_instance_of_the_name_they_concern(recreated):
    old_ids = {event.instance_id for event in recreated["old_events"]}
    new_ids = {event.instance_id for event in recreated["new_events"]}

    assert old_ids == {recreated["old_id"]}
    assert new_ids == {recreated["new"].pk}
    assert recreated["old_id"] != recreated["new"].pk
    # Both keep the name for display; the deleted instance's events are all still there.
    assert {event.instance_name for event in recreated["old_events"]} == {"prod"}
    # created, token rotated, policy created, deleted
    assert AuditEvent.objects.filter(instance_id=recreated["old_id"]).count() == 4


def test_a_narrowed_member_of_the_re_created_instance_reads_only_its_namespaces_new_events(
    recreated,
):
    narrowed = recreated["narrowed"]

    team_created = AuditEvent.objects.get(
        action="registry.namespace.created", instance_id=recreated["new"].pk
    )
    assert _api_ids(narrowed) == sorted([team_created.pk, recreated["new_team"].pk])
    response = token_client(narrowed).get(f"{EVENTS}{recreated['old_team'].pk}/")
    assert response.status_code == 404


def test_the_admin_shows_the_re_created_instances_members_only_its_events(recreated):
    client = Client()
    client.force_login(recreated["reader"])

    changelist = client.get(reverse("admin:audit_auditevent_changelist"))

    assert changelist.status_code == 200
    assert sorted(event.pk for event in changelist.context["cl"].result_list) == sorted(
        event.pk for event in recreated["new_events"]
    )
    old = client.get(reverse("admin:audit_auditevent_change", args=[recreated["old_team"].pk]))
    assert old.status_code == 302  # "does not exist": back to the index
    new = client.get(reverse("admin:audit_auditevent_change", args=[recreated["new_team"].pk]))
    assert new.status_code == 200 and "new-team-policy" in new.content.decode()


def test_superusers_read_both_instances_events_told_apart_by_id(recreated) -> None:
    admin = make_user("root", is_superuser=True, is_staff=True)

    response = token_client(admin).get(EVENTS, {"instance": "prod", "limit": "500"})

    assert response.status_code == 200
    by_id: dict[int, set[int]] = {}
    for row in response.json()["results"]:
        by_id.setdefault(row["instance_id"], set()).add(row["id"])
    assert by_id == {
        recreated["old_id"]: {event.pk for event in recreated["old_events"]},
        recreated["new"].pk: {event.pk for event in recreated["new_events"]},
    }


# --- how record() finds the id ------------------------------------------------------------


def test_record_takes_the_id_from_the_instance_the_object_or_the_live_instance_of_the_name():
    prod = _create("prod")
    other = _create("other")

    given = audit.record("registry.instance.webhook_token_rotated", obj=prod, instance=prod)
    from_obj = audit.record(
        "registry.instance.webhook_token_rotated", obj=other, instance_name="other"
    )
    by_name = audit.record(
        "signing.policy.created",
        object_type="signing.signingpolicy",
        object_id="1",
        instance_name="prod",
        namespace_name="team",
    )
    unknown = audit.record(
        "signing.policy.created",
        object_type="signing.signingpolicy",
        object_id="2",
        instance_name="gone",
    )
    none = audit.record("kms.key.created", object_type="kms.key", object_id="k")

    stored = {
        event.pk: AuditEvent.objects.get(pk=event.pk)
        for event in (given, from_obj, by_name, unknown, none)
    }
    assert (stored[given.pk].instance_id, stored[given.pk].instance_name) == (prod.pk, "prod")
    assert (stored[from_obj.pk].instance_id, stored[from_obj.pk].instance_name) == (
        other.pk,
        "other",
    )
    assert (stored[by_name.pk].instance_id, stored[by_name.pk].namespace_name) == (prod.pk, "team")
    assert (stored[unknown.pk].instance_id, stored[unknown.pk].instance_name) == (None, "gone")
    assert (stored[none.pk].instance_id, stored[none.pk].instance_name) == (None, "")


def test_an_instance_object_already_deleted_is_recorded_by_name_without_an_id():
    prod = _create("prod")
    prod_id = prod.pk
    registry_services.delete_instance(instance=prod)  # Django sets prod.pk to None

    event = audit.record(
        "registry.instance.webhook_token_rotated",
        object_type="registry.instance",
        object_id=prod_id,
        instance=prod,
    )

    stored = AuditEvent.objects.get(pk=event.pk)
    assert (stored.instance_id, stored.instance_name, stored.object_id) == (
        None,
        "prod",
        str(prod_id),
    )


# --- events recorded before the column existed ----------------------------------------------


def _legacy(instance_name: str, at, namespace_name: str = "") -> AuditEvent:
    """An event as recorded before ``instance_id`` existed (the column NULL)."""
    event = AuditEvent(
        at=at,
        actor_type="system",
        actor_label="system",
        action="signing.policy.created",
        object_type="signing.signingpolicy",
        object_id="legacy",
        instance_name=instance_name,
        namespace_name=namespace_name,
    )
    event.save()
    return event


def test_events_without_an_instance_id_are_read_by_name_from_the_instances_creation_on():
    prod = _create("prod")
    reader = make_user("legacy-reader", is_staff=True)
    grant(reader, prod, role=Role.READER)
    before = _legacy("prod", prod.created_at - timedelta(seconds=1))  # an earlier "prod"
    after = _legacy("prod", prod.created_at + timedelta(seconds=1))
    elsewhere = _legacy("other", prod.created_at + timedelta(seconds=1))
    kms = _legacy("", prod.created_at + timedelta(seconds=1))

    visible = set(visible_events(reader).values_list("pk", flat=True))

    assert after.pk in visible
    assert not visible & {before.pk, elsewhere.pk, kms.pk}
    assert AuditEvent.objects.get(pk=after.pk).instance_id is None


@pytest.mark.django_db(transaction=True)
def test_the_migration_keeps_earlier_events_as_they_were_with_no_instance_id():
    """Adding the column rewrites no row (on PostgreSQL the append-only trigger would refuse
    it), so earlier events keep every value and have no id; they cannot be back-filled."""
    before = [("audit", "0003_namespace_name")]
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes("audit")
    executor.migrate(before)
    try:
        historical = executor.loader.project_state(before).apps.get_model("audit", "AuditEvent")
        old = historical.objects.create(
            actor_type="system",
            actor_label="system",
            action="registry.instance.created",
            object_type="registry.instance",
            object_id="7",
            instance_name="prod",
        )
        executor = MigrationExecutor(connection)
        executor.migrate(latest)
    finally:
        MigrationExecutor(connection).migrate(latest)

    stored = AuditEvent.objects.filter(pk=old.pk).values().get()
    assert stored["instance_id"] is None
    assert (stored["instance_name"], stored["object_id"], stored["action"]) == (
        "prod",
        "7",
        "registry.instance.created",
    )
    if connection.vendor == "postgresql":
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(
                f"UPDATE {AuditEvent._meta.db_table} SET instance_id = 7 WHERE id = %s",
                [old.pk],
            )
        assert AuditEvent.objects.get(pk=old.pk).instance_id is None
