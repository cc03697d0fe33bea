"""Upgrading: the clear tokens of DRF's authtoken become hashed knox tokens that keep
working (a KMS_HTTP_TOKEN holding one too), and the clear table is emptied."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone
from knox.crypto import hash_token

from apitokens.models import ApiToken
from kms.clients import HttpKmsClient, get_kms_client
from tests.factories import make_key, make_user

BEFORE = ("apitokens", "0001_initial")
AFTER = ("apitokens", "0002_hash_legacy_drf_tokens")
LEGACY_KEY = "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b"  # DRF's format: 40 hex characters
CREATED = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _migrate(target: tuple[str, str]) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([target])


@pytest.fixture
def legacy_table(transactional_db):
    """The database of a Signet before this change: DRF's authtoken_token, in clear."""
    _migrate(BEFORE)
    datetime_type = connection.data_types["DateTimeField"]
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE authtoken_token (key varchar(40) NOT NULL PRIMARY KEY, "
            f"created {datetime_type} NOT NULL, user_id bigint NOT NULL UNIQUE)"
        )
    yield
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS authtoken_token")
    _migrate(AFTER)


def _legacy_rows() -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT key, user_id FROM authtoken_token")
        return cursor.fetchall()


def test_existing_drf_tokens_are_hashed_keep_working_and_leave_no_clear_copy(
    legacy_table, settings, live_server
):
    settings.API_TOKEN_TTL = timedelta(days=30)
    user = make_user("kms-client", perms=["kms.view_key", "kms.use_key"])
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO authtoken_token (key, created, user_id) VALUES (%s, %s, %s)",
            [LEGACY_KEY, connection.ops.adapt_datetimefield_value(CREATED), user.pk],
        )
    assert _legacy_rows() == [(LEGACY_KEY, user.pk)]
    migrated_at = timezone.now()

    _migrate(AFTER)

    assert _legacy_rows() == []
    row = ApiToken.objects.get()
    assert (row.user, row.digest, row.token_key) == (user, hash_token(LEGACY_KEY), LEGACY_KEY[:15])
    assert row.created == CREATED
    assert migrated_at + timedelta(days=30) <= row.expiry <= timezone.now() + timedelta(days=30)
    dump = io.StringIO()
    call_command("dumpdata", stdout=dump)
    assert LEGACY_KEY not in dump.getvalue()
    # The same token, as the KMS http backend sends it (KMS_HTTP_TOKEN), still works.
    key = make_key("after-upgrade")
    settings.KMS_BACKEND = "http"
    settings.KMS_HTTP_URL = live_server.url
    settings.KMS_HTTP_TOKEN = LEGACY_KEY
    client = get_kms_client()
    assert isinstance(client, HttpKmsClient)
    assert client.describe_key(str(key.key_id)).alias == "after-upgrade"


def test_with_API_TOKEN_TTL_never_migrated_tokens_do_not_expire(legacy_table, settings):
    settings.API_TOKEN_TTL = None
    user = make_user("forever")
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO authtoken_token (key, created, user_id) VALUES (%s, %s, %s)",
            [LEGACY_KEY, connection.ops.adapt_datetimefield_value(CREATED), user.pk],
        )

    _migrate(AFTER)

    assert ApiToken.objects.get(user=user).expiry is None
    assert _legacy_rows() == []


def test_a_database_that_never_had_drf_tokens_migrates(transactional_db):
    _migrate(BEFORE)

    _migrate(AFTER)

    assert "authtoken_token" not in connection.introspection.table_names()
    assert not ApiToken.objects.exists()
