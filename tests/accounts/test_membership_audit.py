"""Granting, changing and revoking a membership in the admin leaves one audit event each
(who, whose membership, the role and namespaces before and after); only superusers read
them, like the membership pages."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import InstanceMembership, Role
from audit.models import AuditEvent
from registry import services as registry_services
from tests.accounts.support import grant
from tests.audit.support import token_client
from tests.factories import make_user
from tests.support.registry_server import free_port

pytestmark = pytest.mark.django_db

ADD = "admin:accounts_instancemembership_add"
CHANGE = "admin:accounts_instancemembership_change"
DELETE = "admin:accounts_instancemembership_delete"
CHANGELIST = "admin:accounts_instancemembership_changelist"


@pytest.fixture
def place():
    prod, _token = registry_services.create_instance(
        name="prod",
        backend_url=f"http://127.0.0.1:{free_port()}",
        default_domain="prod.example.test",
    )
    elsewhere, _token = registry_services.create_instance(
        name="elsewhere",
        backend_url=f"http://127.0.0.1:{free_port()}",
        default_domain="else.example.test",
    )
    return {
        "prod": prod,
        "elsewhere": elsewhere,
        "team": registry_services.create_namespace(instance=prod, name="team"),
        "other": registry_services.create_namespace(instance=prod, name="other"),
        "ext": registry_services.create_namespace(instance=elsewhere, name="ext"),
        "admin": make_user("root", is_staff=True, is_superuser=True),
        "member": make_user("bob", is_staff=True),
    }


@pytest.fixture
def admin(place) -> Client:
    client = Client(REMOTE_ADDR="198.51.100.40")
    client.force_login(place["admin"])
    return client


def membership_events(action: str | None = None) -> list[AuditEvent]:
    queryset = AuditEvent.objects.filter(action__startswith="accounts.membership.")
    if action:
        queryset = queryset.filter(action=action)
    return list(queryset.order_by("id"))


def _form(place, **fields) -> dict:
    return {"user": place["member"].pk, "instance": place["prod"].pk, "role": "reader", **fields}


def test_granting_a_membership_in_the_admin_is_audited(place, admin):
    response = admin.post(reverse(ADD), _form(place, namespaces=[place["team"].pk]))

    assert response.status_code == 302
    membership = InstanceMembership.objects.get(user=place["member"])
    assert (membership.role, membership.all_namespaces) == ("reader", False)
    assert list(membership.namespaces.all()) == [place["team"]]
    assert membership.granted_by == place["admin"]
    [event] = membership_events()
    assert event.action == "accounts.membership.granted"
    assert (event.actor_type, event.actor_id, event.source_ip) == (
        "user",
        place["admin"].pk,
        "198.51.100.40",
    )
    assert (event.object_type, event.object_id, event.object_repr) == (
        "accounts.instancemembership",
        str(membership.pk),
        "bob reader on prod",
    )
    assert (event.instance_name, event.instance_id, event.namespace_name) == (
        "prod",
        place["prod"].pk,
        "",
    )
    assert event.details == {
        "user": "bob",
        "role": "reader",
        "all_namespaces": False,
        "namespaces": ["team"],
    }


def test_changing_a_membership_in_the_admin_records_before_and_after(place, admin):
    membership = grant(place["member"], place["prod"], role=Role.READER)

    unchanged = admin.post(
        reverse(CHANGE, args=[membership.pk]), {"role": "reader", "all_namespaces": "on"}
    )
    changed = admin.post(
        reverse(CHANGE, args=[membership.pk]),
        {"role": "operator", "namespaces": [place["team"].pk, place["other"].pk]},
    )

    assert (unchanged.status_code, changed.status_code) == (302, 302)
    membership.refresh_from_db()
    assert (membership.role, membership.all_namespaces) == ("operator", False)
    assert sorted(ns.name for ns in membership.namespaces.all()) == ["other", "team"]
    [event] = membership_events()  # the save without a change recorded nothing
    assert event.action == "accounts.membership.changed"
    assert (event.actor_id, event.object_id, event.instance_id) == (
        place["admin"].pk,
        str(membership.pk),
        place["prod"].pk,
    )
    assert event.changes == {
        "role": ["reader", "operator"],
        "all_namespaces": [True, False],
        "namespaces": [[], ["other", "team"]],
    }
    assert event.details == {"user": "bob"}


def test_a_memberships_user_and_instance_stay_as_granted(place, admin):
    membership = grant(place["member"], place["prod"], role=Role.READER)
    someone = make_user("someone")

    response = admin.post(
        reverse(CHANGE, args=[membership.pk]),
        {
            "user": someone.pk,
            "instance": place["elsewhere"].pk,
            "role": "reader",
            "namespaces": [place["ext"].pk],
        },
    )

    # The namespaces are checked against the membership's own instance.
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["namespaces"]
    assert any("Not namespaces of instance prod: ext." in error for error in errors)
    membership.refresh_from_db()
    assert (membership.user, membership.instance, membership.all_namespaces) == (
        place["member"],
        place["prod"],
        True,
    )
    assert membership_events() == []


def test_revoking_memberships_in_the_admin_is_audited(place, admin):
    one = grant(place["member"], place["prod"], role=Role.OPERATOR, namespaces=[place["team"]])
    other_user = make_user("carol")
    two = grant(other_user, place["elsewhere"], role=Role.READER)
    one_pk, two_pk = one.pk, two.pk

    deleted = admin.post(reverse(DELETE, args=[one_pk]), {"post": "yes"})
    selected = admin.post(
        reverse(CHANGELIST),
        {
            "action": "delete_selected",
            "_selected_action": [two_pk],
            "post": "yes",
        },
    )

    assert (deleted.status_code, selected.status_code) == (302, 302)
    assert not InstanceMembership.objects.exists()
    events = membership_events("accounts.membership.revoked")
    assert [(e.object_id, e.instance_id, e.actor_id) for e in events] == [
        (str(one_pk), place["prod"].pk, place["admin"].pk),
        (str(two_pk), place["elsewhere"].pk, place["admin"].pk),
    ]
    assert events[0].details == {
        "user": "bob",
        "role": "operator",
        "all_namespaces": False,
        "namespaces": ["team"],
    }
    assert events[1].details == {
        "user": "carol",
        "role": "reader",
        "all_namespaces": True,
        "namespaces": [],
    }
    assert len(membership_events()) == 2


def test_only_superusers_read_membership_events(place, admin):
    reader = make_user("prod-reader", is_staff=True)
    grant(reader, place["prod"], role=Role.READER)
    admin.post(reverse(ADD), _form(place, all_namespaces="on"))
    [granted] = membership_events()

    as_reader = token_client(reader).get("/api/v1/audit/events/", {"instance": "prod"})
    as_admin = token_client(place["admin"]).get("/api/v1/audit/events/", {"action": "accounts.*"})

    assert as_reader.status_code == 200
    rows = as_reader.json()["results"]
    assert rows and not any(row["action"].startswith("accounts.") for row in rows)
    assert token_client(reader).get(f"/api/v1/audit/events/{granted.pk}/").status_code == 404
    assert [row["id"] for row in as_admin.json()["results"]] == [granted.pk]
