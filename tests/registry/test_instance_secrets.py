"""Issue #9, point 2: no interface reads the process environment or the master key.

An instance editor (``registry.change_instance`` plus a reader membership) cannot point
``secret_env`` at Signet's own variables, cannot carry a stored credential to another
host by moving ``backend_url``, and every change and deletion is audited without a secret.
Readers do not see where or as whom Signet reaches the registry.
"""

from __future__ import annotations

import importlib
import json
import os

import pytest
from django.apps import apps as django_apps
from django.test import Client

from accounts.models import Role
from audit.models import AuditEvent
from config.errors import ValidationFailed
from kms import crypto
from kms.services.material import master_keyring
from registry import services
from registry.errors import InstanceMisconfigured
from registry.models import AuthType, Instance
from registry.secrets import key_id, legacy_key_id
from tests.accounts.support import grant
from tests.factories import make_user
from tests.registry.conftest import db_snapshot, make_instance, token_client

pytestmark = pytest.mark.django_db

PROCESS_VARIABLES = ["KMS_MASTER_KEY", "SECRET_KEY", "DATABASE_URL", "KMS_HTTP_TOKEN"]
STORED = "stored-registry-password-Qx19"
ADMIN = "/admin/registry"


def _editor(instance: Instance, **fields):
    """The weakest instance editor: the plain change permission and a reader membership."""
    user = make_user(perms=["registry.change_instance", "registry.delete_instance"], **fields)
    grant(user, instance, role=Role.READER)
    return user


def _reader(instance: Instance, **fields):
    user = make_user(**fields)
    grant(user, instance, role=Role.READER)
    return user


@pytest.fixture
def protected(monkeypatch) -> Instance:
    for name in PROCESS_VARIABLES:  # present, as in a production process
        monkeypatch.setenv(name, os.environ.get(name) or f"value-of-{name}")
    # The operator binds SIGNET_REGISTRY_SECRET_PROD to the instance's origin.
    monkeypatch.setenv("SIGNET_REGISTRY_ORIGIN_PROD", "http://127.0.0.1:5000")
    instance, _ = make_instance(
        auth_type=AuthType.BEARER, secret=STORED, backend_url="http://127.0.0.1:5000"
    )
    return instance


# --- secret_env: one fixed prefix ---------------------------------------------------------


@pytest.mark.parametrize("variable", PROCESS_VARIABLES)
def test_it_refuses_secret_env_naming_a_process_variable_through_the_api(protected, variable):
    api = token_client(_editor(protected))
    before = db_snapshot()

    response = api.patch(
        f"/api/v1/registry/instances/{protected.pk}/", {"secret_env": variable}, format="json"
    )

    assert response.status_code == 400, response.content
    body = response.json()
    assert "SIGNET_REGISTRY_SECRET_" in json.dumps(body)
    assert "secret_env" in json.dumps(body)
    assert db_snapshot() == before
    assert not AuditEvent.objects.filter(action="registry.instance.updated").exists()


def test_it_refuses_secret_env_naming_the_master_key_through_the_admin(protected):
    client = Client()
    client.force_login(_editor(protected, is_staff=True))
    before = db_snapshot()

    response = client.post(
        f"{ADMIN}/instance/{protected.pk}/change/",
        {
            "region": protected.region,
            "description": "",
            "backend_url": protected.backend_url,
            "auth_type": "bearer",
            "username": "",
            "secret": "",
            "secret_env": "KMS_MASTER_KEY",
            "default_domain": protected.default_domain,
            "custom_domains": "",
            "_save": "Save",
        },
    )

    assert response.status_code == 200  # the form again, with the error
    assert "SIGNET_REGISTRY_SECRET_" in response.content.decode()
    assert db_snapshot() == before


def test_it_refuses_a_process_variable_on_create():
    with pytest.raises(ValidationFailed) as error:
        make_instance(auth_type=AuthType.BEARER, secret_env="SECRET_KEY")

    assert "secret_env" in error.value.fields
    assert not Instance.objects.exists()


def test_a_stored_secret_env_outside_the_prefix_is_refused_when_read(protected, caplog):
    # A row written before the rule (or by hand) still cannot read the master key.
    Instance.objects.filter(pk=protected.pk).update(
        sealed_secret=None, secret_master_key_version=None, secret_env="KMS_MASTER_KEY"
    )
    instance = Instance.objects.get(pk=protected.pk)

    with pytest.raises(InstanceMisconfigured) as error:
        instance.registry_client()

    assert "ask an instance editor" in str(error.value)
    assert "KMS_MASTER_KEY" not in str(error.value)  # readers may see the message
    assert "SIGNET_REGISTRY_SECRET_<NAME>" in caplog.text  # the log names the cause
    assert os.environ["KMS_MASTER_KEY"] not in str(error.value) + caplog.text


def test_a_variable_with_the_prefix_is_read(protected, monkeypatch):
    monkeypatch.setenv("SIGNET_REGISTRY_SECRET_PROD", "from-the-environment")

    services.update_instance(instance=protected, secret_env="SIGNET_REGISTRY_SECRET_PROD")

    instance = Instance.objects.get(pk=protected.pk)
    assert instance.sealed_secret is None
    assert instance.registry_client()._static_token == "from-the-environment"


# --- the stored secret is bound to the backend origin -------------------------------------


@pytest.mark.parametrize(
    "moved_to",
    [
        "http://localhost:5000",  # another host
        "http://127.0.0.1:5001",  # another port
        "https://127.0.0.1:5000",  # another scheme
    ],
)
def test_moving_backend_url_to_another_origin_needs_the_secret_again(protected, moved_to):
    api = token_client(_editor(protected))
    before = db_snapshot()

    response = api.patch(
        f"/api/v1/registry/instances/{protected.pk}/", {"backend_url": moved_to}, format="json"
    )

    assert response.status_code == 400, response.content
    assert "Give the secret (or secret_env) again" in response.json()["message"]
    assert db_snapshot() == before
    assert Instance.objects.get(pk=protected.pk).secret() == STORED


def test_moving_backend_url_with_a_new_secret_seals_it_for_the_new_origin(protected):
    api = token_client(_editor(protected))

    response = api.patch(
        f"/api/v1/registry/instances/{protected.pk}/",
        {"backend_url": "http://localhost:5000", "secret": "new-one"},
        format="json",
    )

    assert response.status_code == 200, response.content
    instance = Instance.objects.get(pk=protected.pk)
    assert (instance.backend_url, instance.secret()) == ("http://localhost:5000", "new-one")


def test_moving_backend_url_to_another_origin_drops_the_environment_variable(protected):
    services.update_instance(instance=protected, secret_env="SIGNET_REGISTRY_SECRET_PROD")

    with pytest.raises(ValidationFailed) as error:
        services.update_instance(instance=protected, backend_url="http://localhost:5000")

    assert "secret" in error.value.fields
    instance = Instance.objects.get(pk=protected.pk)
    assert (instance.backend_url, instance.secret_env) == (
        "http://127.0.0.1:5000",
        "SIGNET_REGISTRY_SECRET_PROD",
    )


def test_a_path_change_on_the_same_origin_keeps_the_secret(protected):
    services.update_instance(instance=protected, backend_url="http://127.0.0.1:5000/mirror")

    instance = Instance.objects.get(pk=protected.pk)
    assert (instance.backend_url, instance.secret()) == ("http://127.0.0.1:5000/mirror", STORED)


def test_the_admin_refuses_moving_the_origin_without_the_secret(protected):
    client = Client()
    client.force_login(_editor(protected, is_staff=True))
    before = db_snapshot()

    response = client.post(
        f"{ADMIN}/instance/{protected.pk}/change/",
        {
            "region": protected.region,
            "description": "",
            "backend_url": "http://localhost:5000",
            "auth_type": "bearer",
            "username": "",
            "secret": "",
            "secret_env": "",
            "default_domain": protected.default_domain,
            "custom_domains": "",
            "_save": "Save",
        },
    )

    assert response.status_code == 200
    assert "Give the secret (or secret_env) again" in response.content.decode()
    assert db_snapshot() == before


def test_a_stored_secret_does_not_open_once_the_row_points_elsewhere(protected):
    # Even written straight into the database, a moved URL cannot open the old secret.
    Instance.objects.filter(pk=protected.pk).update(backend_url="http://localhost:5000")
    moved = Instance.objects.get(pk=protected.pk)

    with pytest.raises(InstanceMisconfigured) as error:
        moved.registry_client()

    assert STORED not in str(error.value)
    Instance.objects.filter(pk=protected.pk).update(backend_url="http://127.0.0.1:5000")
    assert Instance.objects.get(pk=protected.pk).secret() == STORED


def test_the_migration_reseals_existing_secrets_for_their_origin(protected):
    # A credential sealed the old way (bound to the instance only) ...
    sealed, version = crypto.seal(
        b"legacy-password", keyring=master_keyring(), key_id=legacy_key_id(protected.pk)
    )
    Instance.objects.filter(pk=protected.pk).update(
        sealed_secret=sealed, secret_master_key_version=version
    )
    with pytest.raises(InstanceMisconfigured):  # no fallback to the old binding at read time
        Instance.objects.get(pk=protected.pk).secret()
    migration = importlib.import_module("registry.migrations.0004_seal_secrets_to_origin")

    migration.forwards(django_apps, None)

    instance = Instance.objects.get(pk=protected.pk)
    assert instance.secret() == "legacy-password"
    assert (
        crypto.open_sealed(
            bytes(instance.sealed_secret),
            keyring=master_keyring(),
            key_id=key_id(pk=protected.pk, backend_url="http://127.0.0.1:5000"),
            version=instance.secret_master_key_version,
        )
        == b"legacy-password"
    )
    migration.forwards(django_apps, None)  # a second run changes nothing
    assert Instance.objects.get(pk=protected.pk).secret() == "legacy-password"
    migration.backwards(django_apps, None)
    assert (
        crypto.open_sealed(
            bytes(Instance.objects.get(pk=protected.pk).sealed_secret),
            keyring=master_keyring(),
            key_id=legacy_key_id(protected.pk),
            version=version,
        )
        == b"legacy-password"
    )


# --- audit --------------------------------------------------------------------------------


def test_changing_an_instance_is_audited_with_before_and_after_and_no_secret(protected):
    editor = _editor(protected)
    api = token_client(editor)

    response = api.patch(
        f"/api/v1/registry/instances/{protected.pk}/",
        {
            "backend_url": "http://localhost:5000",
            "secret": "next-password-77",
            "description": "moved",
        },
        format="json",
    )

    assert response.status_code == 200, response.content
    event = AuditEvent.objects.get(action="registry.instance.updated")
    assert (event.object_type, event.object_id, event.instance_name) == (
        "registry.instance",
        str(protected.pk),
        "prod",
    )
    assert event.actor_id == editor.pk
    assert event.changes["backend_url"] == ["http://127.0.0.1:5000", "http://localhost:5000"]
    assert event.changes["description"] == ["", "moved"]
    assert "stored_auth" not in event.changes  # stored before and after
    assert event.details == {"auth_replaced": True}
    dumped = json.dumps([event.changes, event.details, event.object_repr])
    assert STORED not in dumped and "next-password-77" not in dumped


def test_switching_to_an_environment_variable_is_audited_by_name(protected):
    services.update_instance(instance=protected, secret_env="SIGNET_REGISTRY_SECRET_PROD")

    event = AuditEvent.objects.get(action="registry.instance.updated")
    assert event.changes["env_variable"] == ["", "SIGNET_REGISTRY_SECRET_PROD"]
    assert event.changes["stored_auth"] == [True, False]
    assert event.details == {"auth_replaced": False}


def test_deleting_an_instance_is_audited_with_what_it_was(protected):
    api = token_client(_editor(protected))

    response = api.delete(f"/api/v1/registry/instances/{protected.pk}/")

    assert response.status_code == 204, response.content
    assert not Instance.objects.filter(pk=protected.pk).exists()
    event = AuditEvent.objects.get(action="registry.instance.deleted")
    assert (event.object_type, event.object_id, event.object_repr, event.instance_name) == (
        "registry.instance",
        str(protected.pk),
        "prod",
        "prod",
    )
    assert event.changes["backend_url"] == ["http://127.0.0.1:5000", None]
    assert event.changes["auth_type"] == ["bearer", None]
    assert event.changes["stored_auth"] == [True, None]
    assert STORED not in json.dumps([event.changes, event.details])


def test_a_refused_delete_is_not_audited(protected):
    services.create_namespace(instance=protected, name="team")

    with pytest.raises(services.InstanceInUse):
        services.delete_instance(instance=protected)

    assert not AuditEvent.objects.filter(action="registry.instance.deleted").exists()


# --- readers do not see the connection settings -------------------------------------------

CONNECTION = ("backend_url", "username", "secret_env")


def test_readers_get_no_backend_url_username_or_secret_env_from_the_api(protected):
    services.update_instance(
        instance=protected, auth_type=AuthType.BASIC, username="robot", secret="x"
    )
    reader = token_client(_reader(protected))
    editor = token_client(_editor(protected))

    listed = reader.get("/api/v1/registry/instances/")
    one = reader.get(f"/api/v1/registry/instances/{protected.pk}/")
    edited = editor.get(f"/api/v1/registry/instances/{protected.pk}/")

    assert listed.status_code == one.status_code == edited.status_code == 200
    for body in (listed.json()["results"][0], one.json()):
        assert body["name"] == "prod"
        assert not set(CONNECTION) & set(body), body
        assert "127.0.0.1:5000" not in json.dumps(body) and "robot" not in json.dumps(body)
    assert edited.json()["backend_url"] == "http://127.0.0.1:5000"
    assert edited.json()["username"] == "robot"


def test_readers_see_no_backend_url_username_or_secret_env_in_the_admin(protected):
    services.update_instance(
        instance=protected, auth_type=AuthType.BASIC, username="robot-x9", secret="x"
    )
    client = Client()
    client.force_login(_reader(protected, is_staff=True))

    changelist = client.get(f"{ADMIN}/instance/")
    page = client.get(f"{ADMIN}/instance/{protected.pk}/change/")
    searched = client.get(f"{ADMIN}/instance/", {"q": "127.0.0.1"})

    assert changelist.status_code == page.status_code == searched.status_code == 200
    for response in (changelist, page):
        html = response.content.decode()
        assert "prod" in html
        assert "127.0.0.1:5000" not in html
        assert "robot-x9" not in html
        assert "Backend url" not in html and "Secret env" not in html
    assert "0 instances" in searched.content.decode()  # no probing by backend URL

    editor = Client()
    editor.force_login(_editor(protected, is_staff=True))
    edit_page = editor.get(f"{ADMIN}/instance/{protected.pk}/change/").content.decode()
    assert "127.0.0.1:5000" in edit_page


def test_readers_see_instance_events_without_the_connection_settings(protected):
    services.update_instance(
        instance=protected,
        backend_url="http://localhost:5000",
        secret="moved-secret",
        auth_type=AuthType.BASIC,
        username="robot-x9",
        description="moved",
    )
    reader_user = _reader(protected, is_staff=True)
    editor_user = _editor(protected, is_staff=True)

    read = token_client(reader_user).get(
        "/api/v1/audit/events/", {"action": "registry.instance.updated"}
    )
    edited = token_client(editor_user).get(
        "/api/v1/audit/events/", {"action": "registry.instance.updated"}
    )

    assert read.status_code == edited.status_code == 200, read.content
    seen_by_reader = read.json()["results"][0]
    assert seen_by_reader["changes"]["description"] == ["", "moved"]
    dumped = json.dumps(seen_by_reader)
    assert "localhost:5000" not in dumped and "127.0.0.1:5000" not in dumped
    assert "robot-x9" not in dumped
    assert seen_by_reader["changes"]["backend_url"] == ("[hidden: needs registry.change_instance]")
    assert edited.json()["results"][0]["changes"]["backend_url"] == [
        "http://127.0.0.1:5000",
        "http://localhost:5000",
    ]

    event = AuditEvent.objects.get(action="registry.instance.updated")
    admin_page = Client()
    admin_page.force_login(reader_user)
    html = admin_page.get(f"/admin/audit/auditevent/{event.pk}/change/").content.decode()
    assert "moved" in html
    assert "localhost:5000" not in html and "robot-x9" not in html
    admin_page.force_login(editor_user)
    html = admin_page.get(f"/admin/audit/auditevent/{event.pk}/change/").content.decode()
    assert "localhost:5000" in html
