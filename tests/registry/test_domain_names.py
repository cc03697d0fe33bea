"""A domain name belongs to one registry instance only (verification finds the instance by
the image's domain): the services, the API and the admin refuse a taken name, the
database constraint holds against anything that bypasses them, and the migration that
introduces it stops, naming them, on names two instances already share."""

from __future__ import annotations

import pytest
from django.core.management.base import CommandError
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.test import Client

from registry import services
from registry.models import Instance, InstanceDomain
from tests.factories import make_user
from tests.registry.conftest import db_snapshot, make_instance

API = "/api/v1/registry/instances/"


@pytest.fixture
def prod(db) -> Instance:
    return make_instance(
        "prod", default_domain="registry.example.com", custom_domains=["pull.example.com"]
    )[0]


def _domains() -> set[tuple[str, str, bool]]:
    return set(InstanceDomain.objects.values_list("instance__name", "name", "is_default"))


def test_every_domain_name_of_an_instance_has_a_row_the_default_one_flagged(prod):
    assert _domains() == {
        ("prod", "registry.example.com", True),
        ("prod", "pull.example.com", False),
    }
    assert prod.domain_names() == ["registry.example.com", "pull.example.com"]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"default_domain": "registry.example.com"}, "default_domain"),  # prod's default
        ({"default_domain": "pull.example.com"}, "default_domain"),  # prod's custom
        ({"custom_domains": ["ok.example.com", "registry.example.com"]}, "custom_domains"),
        ({"custom_domains": ["pull.example.com"]}, "custom_domains"),
    ],
)
def test_a_new_instance_cannot_claim_another_instances_domain_name(prod, fields, field):
    before = db_snapshot()
    with pytest.raises(services.DomainNameTaken) as caught:
        make_instance("staging", **fields)
    assert caught.value.http_status == 409
    assert caught.value.code == "ResourceInUse.DomainName"
    assert list(caught.value.fields) == [field]
    assert "already a domain name of another registry instance" in caught.value.message
    assert db_snapshot() == before


def test_an_instance_cannot_take_another_instances_domain_name_by_update(prod):
    staging, _ = make_instance("staging", default_domain="staging.example.com")
    before = db_snapshot()
    with pytest.raises(services.DomainNameTaken):
        services.update_instance(instance=staging, default_domain="pull.example.com")
    with pytest.raises(services.DomainNameTaken):
        services.update_instance(instance=staging, custom_domains=["registry.example.com"])
    assert db_snapshot() == before


def test_an_instance_keeps_and_reshuffles_its_own_names(prod):
    services.update_instance(
        instance=prod,
        default_domain="pull.example.com",
        custom_domains=["registry.example.com", "new.example.com"],
    )
    assert _domains() == {
        ("prod", "pull.example.com", True),
        ("prod", "registry.example.com", False),
        ("prod", "new.example.com", False),
    }
    prod.refresh_from_db()
    assert prod.default_domain == "pull.example.com"


def test_a_name_released_by_one_instance_may_be_claimed_by_another(prod):
    services.update_instance(instance=prod, custom_domains=[])
    staging, _ = make_instance("staging", default_domain="pull.example.com")
    assert ("staging", "pull.example.com", True) in _domains()
    assert staging.domain_names() == ["pull.example.com"]


def test_the_database_refuses_a_shared_domain_name_whatever_writes_it(prod):
    staging, _ = make_instance("staging", default_domain="staging.example.com")
    with pytest.raises(IntegrityError), transaction.atomic():
        InstanceDomain.objects.create(instance=staging, name="registry.example.com")
    with pytest.raises(IntegrityError), transaction.atomic():
        InstanceDomain.objects.create(instance=staging, name="other.example.com", is_default=True)


def test_the_api_answers_409_naming_the_field_but_not_the_other_instance(prod, superuser_client):
    response = superuser_client.post(
        API,
        {
            "name": "staging",
            "backend_url": "http://127.0.0.1:5000",
            "default_domain": "staging.example.com",
            "custom_domains": ["Pull.Example.com"],
        },
        format="json",
    )
    assert response.status_code == 409, response.content
    body = response.json()
    assert body["code"] == "ResourceInUse.DomainName"
    assert body["fields"] == {
        "custom_domains": [
            "pull.example.com is already a domain name of another registry instance."
        ]
    }
    assert "prod" not in response.content.decode()
    assert not Instance.objects.filter(name="staging").exists()

    staging, _ = make_instance("staging", default_domain="staging.example.com")
    response = superuser_client.patch(
        f"{API}{staging.pk}/", {"default_domain": "registry.example.com"}, format="json"
    )
    assert response.status_code == 409
    assert list(response.json()["fields"]) == ["default_domain"]
    staging.refresh_from_db()
    assert staging.default_domain == "staging.example.com"


def test_the_admin_form_shows_the_taken_name_on_its_field(prod):
    client = Client()
    client.force_login(make_user("root", is_superuser=True, is_staff=True))
    response = client.post(
        "/admin/registry/instance/add/",
        {
            "name": "staging",
            "region": "ap-guangzhou",
            "description": "",
            "backend_url": "http://127.0.0.1:5000",
            "auth_type": "none",
            "username": "",
            "secret": "",
            "secret_env": "",
            "default_domain": "registry.example.com",
            "custom_domains": "",
            "_save": "Save",
        },
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["default_domain"] == [
        "registry.example.com is already a domain name of another registry instance."
    ]
    assert not Instance.objects.filter(name="staging").exists()


# --- the migration ------------------------------------------------------------------------------

BEFORE = [("registry", "0001_initial")]
AFTER = [("registry", "0003_domain_names_unique")]


def _old_models():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    apps = MigrationExecutor(connection).loader.project_state(BEFORE).apps
    return apps.get_model("registry", "Instance"), apps.get_model("registry", "InstanceDomain")


def _old_instance(model, name: str, domain: str):
    return model.objects.create(
        name=name,
        region="ap-guangzhou",
        backend_url="http://127.0.0.1:9",
        default_domain=domain,
        webhook_token_hash="0" * 64,
    )


@pytest.fixture
def at_the_previous_schema(transactional_db):
    yield _old_models()
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def test_the_migration_stops_naming_domain_names_two_instances_share(at_the_previous_schema):
    OldInstance, OldDomain = at_the_previous_schema
    a = _old_instance(OldInstance, "alpha", "shared.example.com")
    b = _old_instance(OldInstance, "beta", "beta.example.com")
    OldDomain.objects.create(instance=b, name="shared.example.com")
    OldDomain.objects.create(instance=a, name="alpha-pull.example.com")

    with pytest.raises(CommandError) as caught:
        MigrationExecutor(connection).migrate(AFTER)
    message = str(caught.value)
    assert "shared.example.com: alpha (default), beta (custom)" in message
    assert "alpha-pull" not in message
    assert "Nothing was changed" in message
    applied = MigrationExecutor(connection).loader.applied_migrations
    assert ("registry", "0002_instancedomain_is_default") not in applied
    assert OldDomain.objects.count() == 2

    OldDomain.objects.filter(instance=b).delete()
    MigrationExecutor(connection).migrate(AFTER)
    assert _domains() == {
        ("alpha", "shared.example.com", True),
        ("alpha", "alpha-pull.example.com", False),
        ("beta", "beta.example.com", True),
    }
