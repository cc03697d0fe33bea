"""``GET /api/v1/audit/events/``: permission, filters, pagination; nothing but reading."""

from __future__ import annotations

import datetime
from datetime import timedelta

import pytest
from django.utils import timezone

from audit import context
from audit import services as audit
from audit.models import AuditEvent
from tests.audit.support import token_client
from tests.factories import make_user

pytestmark = pytest.mark.django_db

EVENTS = "/api/v1/audit/events/"
VIEW = "audit.view_auditevent"


@pytest.fixture
def auditor():
    # An administrator: sub-accounts see only their instances' events (those are covered
    # by tests/accounts), while these tests read the whole log, KMS events included.
    return make_user("auditor", perms=[VIEW], is_superuser=True)


@pytest.fixture
def api(auditor):
    return token_client(auditor)


@pytest.fixture
def recorded():
    """Four events: a user's, a command's, a webhook's (instance "prod"), the system's."""
    alice = make_user("alice")
    user_event = audit.record(
        "kms.key.created",
        object_type="kms.key",
        object_id="key-1",
        object_repr="first",
        actor=alice,
    )
    with context.command_actor("manage.py purge_deleted_keys"):
        command_event = audit.record("kms.key.purged", object_type="kms.key", object_id="key-1")
    with context.registry_webhook("prod"):
        webhook_event = audit.record(
            "signing.signature.failed",
            object_type="signing.signature",
            object_id="7",
            instance_name="prod",
            details={"code": "KeyDisabled"},
        )
    system_event = audit.record(
        "signing.sign.requested",
        object_type="signing.signingpolicy",
        object_id="3",
        instance_name="prod",
    )
    return {
        "user": user_event,
        "command": command_event,
        "webhook": webhook_event,
        "system": system_event,
        "alice": alice,
    }


def ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


def test_anonymous_requests_get_401(client, recorded):
    response = client.get(EVENTS)

    assert response.status_code == 401
    assert response.json()["code"] == "AuthFailure"


def test_users_without_the_view_permission_get_403(recorded):
    response = token_client(make_user("nobody", perms=["kms.view_key"])).get(EVENTS)
    detail = token_client(make_user("nobody2")).get(f"{EVENTS}{recorded['user'].pk}/")

    assert response.status_code == 403
    assert response.json()["code"] == "UnauthorizedOperation"
    assert VIEW in response.json()["message"]
    assert detail.status_code == 403


def test_the_list_is_newest_first_with_every_field(api, recorded):
    response = api.get(EVENTS)

    body = response.json()
    assert ids(response) == [recorded[k].pk for k in ("system", "webhook", "command", "user")]
    assert body["count"] == 4
    row = body["results"][3]
    assert row == {
        "id": recorded["user"].pk,
        "at": row["at"],
        "actor_type": "user",
        "actor": recorded["alice"].pk,
        "actor_label": "alice",
        "source_ip": None,
        "action": "kms.key.created",
        "object_type": "kms.key",
        "object_id": "key-1",
        "object_repr": "first",
        "instance_name": "",
        "instance_id": None,
        "namespace_name": "",
        "changes": {},
        "details": {},
    }
    assert body["results"][1]["details"] == {"code": "KeyDisabled"}


def test_one_event_by_id_and_404_for_an_unknown_one(api, recorded):
    found = api.get(f"{EVENTS}{recorded['webhook'].pk}/")
    missing = api.get(f"{EVENTS}999999/")
    malformed = api.get(f"{EVENTS}abc/")
    huge = api.get(f"{EVENTS}{'9' * 40}/")

    assert found.status_code == 200
    assert found.json()["actor_label"] == "registry:prod"
    for response in (missing, malformed, huge):
        assert response.status_code == 404
        assert response.json()["code"] == "ResourceNotFound"


def test_filters_by_actor_type_actor_action_object_and_instance(api, recorded):
    assert ids(api.get(EVENTS, {"actor_type": "command"})) == [recorded["command"].pk]
    assert ids(api.get(EVENTS, {"actor_type": "registry-webhook"})) == [recorded["webhook"].pk]
    assert ids(api.get(EVENTS, {"actor": recorded["alice"].pk})) == [recorded["user"].pk]
    assert ids(api.get(EVENTS, {"actor": "alice"})) == [recorded["user"].pk]
    assert ids(api.get(EVENTS, {"actor": "manage.py purge_deleted_keys"})) == [
        recorded["command"].pk
    ]
    assert ids(api.get(EVENTS, {"action": "kms.key.purged"})) == [recorded["command"].pk]
    assert ids(api.get(EVENTS, {"action": "kms.key.*"})) == [
        recorded["command"].pk,
        recorded["user"].pk,
    ]
    assert ids(api.get(EVENTS, {"object_type": "kms.key", "object_id": "key-1"})) == [
        recorded["command"].pk,
        recorded["user"].pk,
    ]
    assert ids(api.get(EVENTS, {"instance": "prod"})) == [
        recorded["system"].pk,
        recorded["webhook"].pk,
    ]
    assert ids(api.get(EVENTS, {"actor": "nobody-at-all"})) == []
    assert ids(api.get(EVENTS, {"actor": "9" * 30})) == []


def test_filters_by_namespace_name_exactly(api, recorded):
    team = audit.record(
        "signing.policy.created",
        object_type="signing.signingpolicy",
        object_id="1",
        instance_name="prod",
        namespace_name="team",
    )
    elsewhere = audit.record(
        "signing.policy.created",
        object_type="signing.signingpolicy",
        object_id="2",
        instance_name="staging",
        namespace_name="team",
    )
    audit.record(
        "signing.policy.created",
        object_type="signing.signingpolicy",
        object_id="3",
        instance_name="prod",
        namespace_name="team-two",
    )

    assert ids(api.get(EVENTS, {"namespace": "team"})) == [elsewhere.pk, team.pk]
    assert ids(api.get(EVENTS, {"namespace": "team", "instance": "prod"})) == [team.pk]
    assert ids(api.get(EVENTS, {"namespace": "tea"})) == []  # exact, not a prefix
    assert ids(api.get(EVENTS, {"namespace": "no-such-namespace"})) == []
    # No namespace is named "": an empty value selects nothing (neither the instance-wide
    # events nor everything).
    empty = api.get(EVENTS, {"namespace": ""})
    assert ids(empty) == [] and empty.json()["count"] == 0
    assert len(ids(api.get(EVENTS))) == 7  # without the filter: all of them


def test_the_schema_documents_every_filter(api):
    response = api.get("/api/v1/schema/", {"format": "json"})

    assert response.status_code == 200
    operation = response.json()["paths"]["/api/v1/audit/events/"]["get"]
    documented = {p["name"] for p in operation["parameters"] if p["in"] == "query"}
    assert documented >= {
        "actor",
        "actor_type",
        "action",
        "object_type",
        "object_id",
        "instance",
        "namespace",
        "since",
        "until",
    }


def test_filters_by_time(api, recorded):
    now = timezone.now()
    old = recorded["user"]
    # An event from last week (written as the service would, with its own time).
    week_ago = AuditEvent(
        action="kms.key.created",
        actor_type="system",
        actor_label="system",
        at=now - timedelta(days=7),
    )
    week_ago.save()

    recent = ids(api.get(EVENTS, {"since": (now - timedelta(days=1)).isoformat()}))
    older = ids(api.get(EVENTS, {"until": (now - timedelta(days=1)).isoformat()}))
    window = ids(
        api.get(
            EVENTS,
            {
                "since": (now - timedelta(days=8)).strftime("%Y-%m-%dT%H:%M"),
                "until": (now - timedelta(days=6)).isoformat(),
            },
        )
    )
    zulu = ids(api.get(EVENTS, {"since": (now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")}))

    assert old.pk in recent and week_ago.pk not in recent
    assert older == [week_ago.pk]
    assert window == [week_ago.pk]
    assert set(zulu) == set(recent)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2025-13-45T00:00:00"}, "until"),
        ({"since": "2025-02-01T00:00:00Z", "until": "2025-01-01T00:00:00Z"}, "since"),
        ({"actor_type": "robot"}, "actor_type"),
        ({"until": "0001-01-01T00:30:00+01:00"}, "until"),  # before year 1 in UTC
    ],
)
def test_malformed_filters_answer_400_naming_the_parameter(api, recorded, params, field):
    response = api.get(EVENTS, params)

    assert response.status_code == 400
    assert response.json()["code"] == "InvalidParameterValue"
    assert list(response.json()["fields"]) == [field]


def test_the_list_is_paginated(api, recorded):
    first = api.get(EVENTS, {"limit": 3})
    rest = api.get(EVENTS, {"limit": 3, "offset": 3})

    assert first.json()["count"] == 4 and first.json()["next"]
    assert ids(first) + ids(rest) == [
        recorded[k].pk for k in ("system", "webhook", "command", "user")
    ]


def test_nothing_can_be_written_through_the_api(api, recorded, admin_user):
    before = list(AuditEvent.objects.order_by("id").values())
    admin = token_client(admin_user)
    event_url = f"{EVENTS}{recorded['user'].pk}/"

    for client in (api, admin):
        assert client.post(EVENTS, {"action": "kms.key.created"}, format="json").status_code == 405
        assert client.put(event_url, {"object_repr": "x"}, format="json").status_code == 405
        assert client.patch(event_url, {"object_repr": "x"}, format="json").status_code == 405
        assert client.delete(event_url).status_code == 405

    assert list(AuditEvent.objects.order_by("id").values()) == before


def test_reading_the_log_is_not_itself_recorded(api, recorded):
    before = AuditEvent.objects.count()

    api.get(EVENTS)
    api.get(f"{EVENTS}{recorded['user'].pk}/")

    assert AuditEvent.objects.count() == before


def test_time_filters_take_any_utc_offset_python_reads(api, recorded):
    # PostgreSQL refuses offsets beyond ±15:59 (schemathesis sent +17:10): compared in UTC.
    event = recorded["user"]
    before = (event.at - timedelta(hours=1)).astimezone(
        datetime.timezone(timedelta(hours=17, minutes=10))
    )

    response = api.get(EVENTS, {"since": before.isoformat(), "until": "9999-12-30T00:00:00-17:10"})

    assert response.status_code == 200, response.content
    assert event.pk in ids(response)
