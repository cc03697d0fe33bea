"""Audit events are append-only: the model, its QuerySet and (PostgreSQL) a trigger."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from django.db import DatabaseError, connection, transaction

from audit import services as audit
from audit.models import AuditEvent, AuditLogIsAppendOnly
from tests.factories import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def event():
    return audit.record(
        "kms.key.created",
        object_type="kms.key",
        object_id="k1",
        object_repr="first",
        details={"alias": "first"},
    )


def _stored(event: AuditEvent) -> Mapping[str, object]:
    return AuditEvent.objects.filter(pk=event.pk).values().get()


def test_saving_a_recorded_event_again_is_refused(event):
    before = _stored(event)
    event.object_repr = "rewritten"

    with pytest.raises(AuditLogIsAppendOnly):
        event.save()
    with pytest.raises(AuditLogIsAppendOnly):
        event.save(update_fields=["object_repr"])
    loaded = AuditEvent.objects.get(pk=event.pk)
    loaded.action = "kms.key.purged"
    with pytest.raises(AuditLogIsAppendOnly):
        loaded.save()
    assert _stored(event) == before


def test_deleting_an_event_is_refused(event):
    with pytest.raises(AuditLogIsAppendOnly):
        event.delete()
    with pytest.raises(AuditLogIsAppendOnly):
        AuditEvent.objects.get(pk=event.pk).delete()
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_queryset_update_delete_and_bulk_update_are_refused(event):
    before = _stored(event)
    with pytest.raises(AuditLogIsAppendOnly):
        AuditEvent.objects.filter(pk=event.pk).update(object_repr="rewritten")
    with pytest.raises(AuditLogIsAppendOnly):
        AuditEvent.objects.all().delete()
    with pytest.raises(AuditLogIsAppendOnly):
        AuditEvent.objects.filter(pk=event.pk)._raw_delete(connection.alias)
    event.object_repr = "rewritten"
    with pytest.raises(AuditLogIsAppendOnly):
        AuditEvent.objects.bulk_update([event], ["object_repr"])
    with pytest.raises(AuditLogIsAppendOnly):
        AuditEvent._base_manager.filter(pk=event.pk).update(action="kms.key.purged")
    assert _stored(event) == before


def test_an_existing_primary_key_cannot_be_overwritten_by_a_new_object(event):
    clone = AuditEvent(
        pk=event.pk, action="kms.key.purged", actor_type="system", actor_label="system"
    )
    with pytest.raises(DatabaseError), transaction.atomic():
        clone.save()
    assert AuditEvent.objects.get(pk=event.pk).action == "kms.key.created"


def test_deleting_a_user_keeps_their_events_under_their_name():
    user = make_user("leaving")
    event = audit.record("kms.key.created", object_type="kms.key", object_id="k2", actor=user)

    user.delete()

    stored = AuditEvent.objects.get(pk=event.pk)
    assert stored.actor_id is None
    assert stored.actor_label == "leaving"
    assert stored.actor_type == "user"
    assert stored.action == "kms.key.created"


def test_the_database_itself_refuses_raw_updates_and_deletes_on_postgresql(event):
    """PostgreSQL: the migration's trigger stops any client; SQLite has no trigger (the
    model and QuerySet guards are what protect it there)."""
    table = AuditEvent._meta.db_table
    if connection.vendor == "postgresql":
        for sql in (
            f"UPDATE {table} SET object_repr = 'rewritten' WHERE id = %s",
            f"UPDATE {table} SET actor_label = 'someone', actor_id = NULL WHERE id = %s",
            f"DELETE FROM {table} WHERE id = %s",
        ):
            with (
                pytest.raises(DatabaseError, match="append-only"),
                transaction.atomic(),
                connection.cursor() as cursor,
            ):
                cursor.execute(sql, [event.pk])
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_trigger WHERE tgname = 'audit_auditevent_append_only'"
            )
            assert cursor.fetchone()[0] == 1
        assert _stored(event)["object_repr"] == "first"
    else:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s",
                [table],
            )
            assert cursor.fetchone()[0] == 0
