"""Sessions written before config.sessions kept the cookie value in clear: remove them.

They no longer match any lookup (the store hashes every key to 40 hex characters, Django's
keys are 32 characters), so this signs nobody out who was not already signed out; it only
makes sure the clear values do not linger in the table, and in dumps, until they expire.
"""

from django.db import migrations
from django.db.models.functions import Length


def drop_cleartext_sessions(apps, schema_editor):
    session = apps.get_model("sessions", "Session")
    session.objects.annotate(key_length=Length("session_key")).exclude(key_length=40).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("accounts", "0002_membership_all_namespaces"),
        ("sessions", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(drop_cleartext_sessions, migrations.RunPython.noop, elidable=True),
    ]
