# A separate migration (transaction) from 0002's data: PostgreSQL refuses to alter a table
# with pending deferred-constraint events from rows written in the same transaction.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("registry", "0002_instancedomain_is_default"),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="instancedomain",
            name="registry_instance_domain_unique",
        ),
        migrations.AddConstraint(
            model_name="instancedomain",
            constraint=models.UniqueConstraint(fields=("name",), name="registry_domain_name_unique"),
        ),
        migrations.AddConstraint(
            model_name="instancedomain",
            constraint=models.UniqueConstraint(
                condition=models.Q(("is_default", True)),
                fields=("instance",),
                name="registry_instance_one_default_domain",
            ),
        ),
    ]
