"""Move the tokens of DRF's ``authtoken`` (kept in clear in ``authtoken_token``) into
knox's table as hashes, then empty ``authtoken_token``.

A migrated token keeps working (the same ``Authorization: Token <key>``, so a
``KMS_HTTP_TOKEN`` holding one too) until ``API_TOKEN_TTL`` after this migration; with
``API_TOKEN_TTL=never`` it does not expire. ``rest_framework.authtoken`` is no longer
installed, so its table is read with plain SQL, and only when it exists (a new database
never had it). Not reversible: the clear keys are gone.
"""

from __future__ import annotations

import datetime

from django.conf import settings
from django.db import migrations
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from knox.crypto import hash_token
from knox.settings import CONSTANTS

LEGACY_TABLE = "authtoken_token"


def _aware(value: object) -> datetime.datetime | None:
    if isinstance(value, str):
        value = parse_datetime(value)
    if not isinstance(value, datetime.datetime):
        return None
    return timezone.make_aware(value, datetime.UTC) if timezone.is_naive(value) else value


def hash_legacy_tokens(apps, schema_editor) -> None:
    connection = schema_editor.connection
    if LEGACY_TABLE not in connection.introspection.table_names():
        return
    AuthToken = apps.get_model("knox", "AuthToken")
    table = connection.ops.quote_name(LEGACY_TABLE)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {connection.ops.quote_name('key')}, user_id, created FROM {table}")
        legacy = cursor.fetchall()
    ttl = settings.API_TOKEN_TTL
    expiry = None if ttl is None else timezone.now() + ttl
    for key, user_id, created in legacy:
        digest = hash_token(key)
        AuthToken.objects.create(
            digest=digest, token_key=key[: CONSTANTS.TOKEN_KEY_LENGTH], user_id=user_id,
            expiry=expiry,
        )
        if (when := _aware(created)) is not None:  # auto_now_add set "now" on create
            AuthToken.objects.filter(digest=digest).update(created=when)
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table}")


class Migration(migrations.Migration):
    dependencies = [("apitokens", "0001_initial")]

    operations = [
        migrations.RunPython(hash_legacy_tokens, migrations.RunPython.noop, elidable=False),
    ]
