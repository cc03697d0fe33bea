"""Every domain name of an instance gets an InstanceDomain row (the default one flagged
``is_default``), so 0003 can make names unique across instances. Stops, naming them, when
two instances already claim the same name: someone must decide which keeps it."""

from collections import defaultdict

from django.core.management.base import CommandError
from django.db import migrations, models


def add_default_domains(apps, schema_editor):
    Instance = apps.get_model("registry", "Instance")
    InstanceDomain = apps.get_model("registry", "InstanceDomain")
    for instance in Instance.objects.order_by("pk"):
        row, created = InstanceDomain.objects.get_or_create(
            instance=instance, name=instance.default_domain, defaults={"is_default": True}
        )
        if not created:  # listed as a custom domain too: it is the default one
            row.is_default = True
            row.save(update_fields=["is_default"])

    claims = defaultdict(list)
    for name, instance_name, is_default in InstanceDomain.objects.order_by(
        "name", "instance__name"
    ).values_list("name", "instance__name", "is_default"):
        claims[name].append(f"{instance_name} ({'default' if is_default else 'custom'})")
    shared = {name: owners for name, owners in claims.items() if len(owners) > 1}
    if shared:
        lines = "\n".join(f"  {name}: {', '.join(owners)}" for name, owners in shared.items())
        raise CommandError(
            "Domain names must belong to one registry instance only (image verification "
            "finds the instance by the image's domain), but these are claimed by several:\n"
            f"{lines}\n"
            "Keep each name on one instance: with the previous release still running, change "
            "the other instances' default domain or remove the custom domain (admin: Registry "
            "> Instances), or delete the custom rows in `manage.py dbshell` "
            "(registry_instancedomain), then run migrate again. Nothing was changed."
        )


def remove_default_domains(apps, schema_editor):
    apps.get_model("registry", "InstanceDomain").objects.filter(is_default=True).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("registry", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="instancedomain",
            name="is_default",
            field=models.BooleanField(default=False),
        ),
        migrations.RunPython(add_default_domains, remove_default_domains),
    ]
