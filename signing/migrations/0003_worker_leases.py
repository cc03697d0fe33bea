"""Workers the database knows, and which worker holds a claimed signature row.

Cheap on a big signature table: the new column is nullable (no table rewrite) and its
index is partial (only claimed rows) and, on PostgreSQL, built CONCURRENTLY so pushes keep
being recorded meanwhile; hence a non-atomic migration. Reversible.
"""

import django.db.models.deletion
from django.db import migrations, models


class AddIndexConcurrentlyOnPostgres(migrations.AddIndex):
    """``AddIndex`` that does not block writes on PostgreSQL; plain elsewhere (SQLite)."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        model = to_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.add_index(model, self.index, concurrently=True)
        else:
            schema_editor.add_index(model, self.index)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        model = from_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.remove_index(model, self.index, concurrently=True)
        else:
            schema_editor.remove_index(model, self.index)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("signing", "0002_cleanup_reason_not_in_registry"),
    ]

    operations = [
        migrations.CreateModel(
            name="Worker",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("kind", models.CharField(max_length=30)),
                ("hostname", models.CharField(max_length=255)),
                ("pid", models.PositiveIntegerField()),
                ("started_at", models.DateTimeField()),
                ("heartbeat_at", models.DateTimeField(db_index=True)),
            ],
        ),
        migrations.AddField(
            model_name="signature",
            name="claimed_by",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="claims",
                to="signing.worker",
            ),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name="signature",
            index=models.Index(
                condition=models.Q(("claimed_by__isnull", False)),
                fields=["claimed_by"],
                name="signing_signature_claimed_by",
            ),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name="signature",
            index=models.Index(
                condition=models.Q(("claimed_until__isnull", False)),
                fields=["claimed_until"],
                name="signing_signature_claimed",
            ),
        ),
    ]
