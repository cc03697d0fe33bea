"""KMS changes each leave exactly one audit event: through the services, the API (token
user), the admin (session user) and the management commands."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from kms import crypto
from kms import services as kms_services
from kms.models import AuthorizedService, Key, KeyState
from kms.services import rotation
from tests.audit.support import actions, events, the_event, token_client
from tests.factories import make_key, make_user

pytestmark = pytest.mark.django_db

REGISTRY = AuthorizedService.REGISTRY_SIGNING


def _state(key: Key) -> str:
    return Key.objects.values_list("state", flat=True).get(pk=key.pk)


# --- services ---------------------------------------------------------------------------------


def test_creating_a_key_records_who_created_it():
    alice = make_user("alice")

    key = kms_services.create_key(alias="audited-key", description="d", created_by=alice)

    event = the_event("kms.key.created")
    assert (event.actor_type, event.actor_id, event.actor_label) == ("user", alice.pk, "alice")
    assert (event.object_type, event.object_id) == ("kms.key", str(key.key_id))
    assert (event.instance_name, event.namespace_name) == ("", "")  # superusers' only
    assert event.details == {
        "alias": "audited-key",
        "key_usage": key.key_usage,
        "region": key.region,
    }
    assert event.changes == {}


def test_disabling_and_enabling_record_the_state_before_and_after():
    key = make_key("toggled")

    kms_services.disable_key(key_id=str(key.key_id))
    kms_services.disable_key(key_id=str(key.key_id))  # already disabled: no change, no event
    kms_services.enable_key(key_id=str(key.key_id))

    changed = events("kms.key.state_changed")
    assert [event.changes for event in changed] == [
        {"state": ["Enabled", "Disabled"]},
        {"state": ["Disabled", "Enabled"]},
    ]
    assert {event.object_id for event in changed} == {str(key.key_id)}
    assert _state(key) == KeyState.ENABLED


def test_scheduling_and_cancelling_deletion_record_the_dates():
    key = make_key("doomed")
    kms_services.disable_key(key_id=str(key.key_id))

    scheduled = kms_services.schedule_key_deletion(key_id=str(key.key_id), pending_window_in_days=7)
    kms_services.cancel_key_deletion(key_id=str(key.key_id))

    schedule_event = the_event("kms.key.deletion_scheduled")
    assert schedule_event.changes == {
        "state": ["Disabled", "PendingDelete"],
        "deletion_date": [None, scheduled.deletion_date.isoformat()],
    }
    assert the_event("kms.key.deletion_cancelled").changes == {
        "state": ["PendingDelete", "Disabled"],
        "deletion_date": [scheduled.deletion_date.isoformat(), None],
    }
    assert _state(key) == KeyState.DISABLED


def test_a_refused_state_change_records_nothing():
    key = make_key("stays")
    before = actions()

    with pytest.raises(Exception, match="disable it before"):
        kms_services.schedule_key_deletion(key_id=str(key.key_id), pending_window_in_days=7)

    assert actions() == before


def test_purging_records_one_event_per_destroyed_key():
    due = [make_key("due-1"), make_key("due-2")]
    later = make_key("later")
    for key in [*due, later]:
        kms_services.disable_key(key_id=str(key.key_id))
        kms_services.schedule_key_deletion(key_id=str(key.key_id), pending_window_in_days=7)

    purged = kms_services.purge_deleted_keys(now=timezone.now() + timedelta(days=7, minutes=1))
    for key in due:  # "later" is due too at that time; destroy only the two
        assert key.key_id in {k.key_id for k in purged}
    assert len(purged) == 3

    purge_events = events("kms.key.purged")
    assert sorted(event.object_id for event in purge_events) == sorted(
        str(key.key_id) for key in [*due, later]
    )
    assert {event.details["alias"] for event in purge_events} == {"due-1", "due-2", "later"}
    assert not Key.objects.filter(pk__in=[key.pk for key in [*due, later]]).exists()


def test_a_dry_run_purge_records_nothing():
    key = make_key("dry")
    kms_services.disable_key(key_id=str(key.key_id))
    kms_services.schedule_key_deletion(key_id=str(key.key_id), pending_window_in_days=7)

    kms_services.purge_deleted_keys(now=timezone.now() + timedelta(days=8), dry_run=True)

    assert events("kms.key.purged") == []
    assert Key.objects.filter(pk=key.pk).exists()


def test_granting_and_revoking_the_service_authorization():
    admin = make_user("granter")

    grant = kms_services.grant_service_authorization(
        service=REGISTRY, granted_by=admin, note="for signing"
    )
    kms_services.grant_service_authorization(service=REGISTRY)  # already active: no event
    kms_services.revoke_service_authorization(service=REGISTRY, revoked_by=admin)
    kms_services.revoke_service_authorization(service=REGISTRY)  # nothing active: no event

    granted = the_event("kms.service_authorization.granted")
    revoked = the_event("kms.service_authorization.revoked")
    assert (granted.object_type, granted.object_id) == ("kms.serviceauthorization", str(grant.pk))
    assert granted.details == {"service": REGISTRY, "note": "for signing"}
    assert (granted.actor_id, revoked.actor_id) == (admin.pk, admin.pk)
    assert revoked.object_id == str(grant.pk)
    assert revoked.object_repr == REGISTRY


def test_rotating_the_master_key_records_the_counts(settings):
    make_key("old-1")
    make_key("old-2")
    settings.KMS_MASTER_KEY = crypto.generate_master_key_text(2) + "," + settings.KMS_MASTER_KEY

    result = rotation.rotate_master_key()

    event = the_event("kms.master_key.rotated")
    assert result.resealed == 2
    assert (event.object_type, event.object_id) == ("kms.master_key", "2")
    assert event.details["resealed"] == 2
    assert event.details["already_current"] == 0
    assert event.details["target_version"] == 2
    assert event.details["hooks"] == [
        {"hook": "registry.services.reseal_instance_secrets", "resealed": 0}
    ]


# --- through the API (token user) --------------------------------------------------------------


def test_api_changes_are_recorded_for_the_token_user_with_the_source_ip():
    operator = make_user("operator", perms=["kms.add_key", "kms.manage_key_state"])
    api = token_client(operator, REMOTE_ADDR="198.51.100.7")

    created = api.post("/api/v1/kms/keys/", {"alias": "api-key"}, format="json")
    disabled = api.post(f"/api/v1/kms/keys/{created.json()['key_id']}/disable/")

    assert (created.status_code, disabled.status_code) == (201, 200)
    for action in ("kms.key.created", "kms.key.state_changed"):
        event = the_event(action)
        assert (event.actor_type, event.actor_id, event.actor_label) == (
            "user",
            operator.pk,
            "operator",
        )
        assert event.source_ip == "198.51.100.7"
        assert event.object_id == created.json()["key_id"]


def test_a_refused_api_request_records_nothing():
    viewer = make_user("viewer", perms=["kms.view_key"])
    key = make_key("guarded")
    before = actions()

    response = token_client(viewer).post(f"/api/v1/kms/keys/{key.key_id}/disable/")

    assert response.status_code == 403
    assert actions() == before
    assert _state(key) == KeyState.ENABLED


def test_api_grant_and_revoke_are_recorded_for_the_token_user():
    admin = make_user(
        "kms-admin", perms=["kms.add_serviceauthorization", "kms.change_serviceauthorization"]
    )
    api = token_client(admin)

    assert (
        api.post(
            "/api/v1/kms/service-authorizations/", {"service": REGISTRY}, format="json"
        ).status_code
        == 201
    )
    assert (
        api.post(
            "/api/v1/kms/service-authorizations/revoke/", {"service": REGISTRY}, format="json"
        ).status_code
        == 200
    )

    for action in ("kms.service_authorization.granted", "kms.service_authorization.revoked"):
        event = the_event(action)
        assert (event.actor_id, event.source_ip) == (admin.pk, "127.0.0.1")


# --- through the admin (session user) -----------------------------------------------------------


def test_admin_actions_are_recorded_for_the_session_user(admin_client, admin_user):
    key = make_key("admin-toggled")

    response = admin_client.post(
        reverse("admin:kms_key_changelist"),
        {"action": "disable_keys", "_selected_action": [str(key.pk)], "index": 0},
        REMOTE_ADDR="192.0.2.44",
        follow=True,
    )

    assert response.status_code == 200
    event = the_event("kms.key.state_changed")
    assert (event.actor_type, event.actor_id, event.actor_label) == (
        "user",
        admin_user.pk,
        admin_user.username,
    )
    assert event.source_ip == "192.0.2.44"
    assert event.changes == {"state": ["Enabled", "Disabled"]}


def test_creating_a_key_in_the_admin_is_recorded_for_the_session_user(admin_client, admin_user):
    response = admin_client.post(
        reverse("admin:kms_key_add"),
        {
            "alias": "from-admin",
            "description": "",
            "region": "ap-guangzhou",
            "key_usage": "ASYMMETRIC_SIGN_VERIFY_RSA_2048",
        },
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    event = the_event("kms.key.created")
    assert event.actor_id == admin_user.pk
    assert event.object_id == str(Key.objects.get(alias="from-admin").key_id)


# --- through the commands -----------------------------------------------------------------------


def test_the_purge_command_is_recorded_as_the_command(settings):
    key = make_key("cron-doomed")
    kms_services.disable_key(key_id=str(key.key_id))
    kms_services.schedule_key_deletion(key_id=str(key.key_id), pending_window_in_days=7)
    Key.objects.filter(pk=key.pk).update(deletion_date=timezone.now() - timedelta(minutes=1))

    call_command("purge_deleted_keys", stdout=_Sink(), stderr=_Sink())

    event = the_event("kms.key.purged")
    assert (event.actor_type, event.actor_label, event.actor_id) == (
        "command",
        "manage.py purge_deleted_keys",
        None,
    )
    assert event.source_ip is None
    assert event.object_id == str(key.key_id)


def test_the_rotate_command_is_recorded_as_the_command(settings):
    make_key("to-reseal")
    settings.KMS_MASTER_KEY = crypto.generate_master_key_text(3) + "," + settings.KMS_MASTER_KEY

    call_command("rotate_master_key", stdout=_Sink())

    event = the_event("kms.master_key.rotated")
    assert (event.actor_type, event.actor_label) == ("command", "manage.py rotate_master_key")
    assert event.details["resealed"] == 1
    assert AuditEvent.objects.count() == len(actions())


class _Sink:
    def write(self, text: str) -> None:
        pass

    def flush(self) -> None:
        pass
