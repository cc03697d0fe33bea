"""A credential in an environment variable goes only where the operator bound it.

``SIGNET_REGISTRY_SECRET_<NAME>`` is sent only to the origin (scheme, host, port) in
``SIGNET_REGISTRY_ORIGIN_<NAME>``, which the operator sets next to it. An instance editor
moving ``backend_url`` (admin or API, naming the variable again or not), or naming another
instance's variable, cannot get it sent anywhere else; neither can a row changed behind
Signet's back or an operator who rebinds the variable later. Two scripted registries on
loopback play the legitimate registry and the editor's host, and record what reaches them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from accounts.models import Role
from audit.models import AuditEvent
from config.errors import ValidationFailed
from registry import services
from registry.errors import InstanceMisconfigured
from registry.models import AuthType, Instance
from tests.accounts.support import grant
from tests.factories import make_user
from tests.registry.conftest import db_snapshot, make_instance, token_client
from tests.support.stub_registry import Reply, SeenRequest, StubRegistry

pytestmark = pytest.mark.django_db

PASSWORD_A = "password-of-instance-a-Zr81"
ADMIN = "/admin/registry"


def _answer(request: SeenRequest) -> Reply:
    if request.path.startswith("/v2/_catalog"):
        return Reply(200, b'{"repositories": []}', {"Content-Type": "application/json"})
    return Reply(200, b"{}", {"Content-Type": "application/json"})


@pytest.fixture
def home() -> Iterator[StubRegistry]:
    """The registry the operator bound the variable to."""
    with StubRegistry(_answer) as stub:
        yield stub


@pytest.fixture
def attacker() -> Iterator[StubRegistry]:
    """A host an instance editor controls."""
    with StubRegistry(_answer) as stub:
        yield stub


@pytest.fixture
def instance_a(monkeypatch, home) -> Instance:
    monkeypatch.setenv("SIGNET_REGISTRY_SECRET_A", PASSWORD_A)
    monkeypatch.setenv("SIGNET_REGISTRY_ORIGIN_A", home.url)
    instance, _ = make_instance(
        "prod",
        backend_url=home.url,
        auth_type=AuthType.BEARER,
        secret_env="SIGNET_REGISTRY_SECRET_A",
    )
    return instance


def _editor(instance: Instance, **fields):
    user = make_user(perms=["registry.change_instance"], **fields)
    grant(user, instance, role=Role.READER)
    return user


def _sync(name: str) -> None:
    call_command("sync_registry", name, stdout=_Sink(), stderr=_Sink())


class _Sink:
    def write(self, text: str) -> None:
        pass

    def flush(self) -> None:
        pass


def _bearers(stub: StubRegistry) -> list[str]:
    return [r.headers.get("Authorization", "") for r in stub.requests]


# --- a matching binding works -------------------------------------------------------------


def test_a_variable_bound_to_the_backend_origin_is_sent_there(instance_a, home, attacker):
    _sync("prod")

    assert _bearers(home)[:1] == [f"Bearer {PASSWORD_A}"]
    assert attacker.requests == []


@pytest.mark.parametrize(
    ("declared", "backend"),
    [
        ("https://127.0.0.1", "https://127.0.0.1:443/v2-mirror"),
        ("https://127.0.0.1:443", "https://127.0.0.1"),
        ("HTTPS://127.0.0.1:443/", "https://127.0.0.1/"),
        ("http://127.0.0.1", "http://127.0.0.1:80"),
    ],
)
def test_the_companion_is_accepted_with_or_without_the_default_port(monkeypatch, declared, backend):
    monkeypatch.setenv("SIGNET_REGISTRY_SECRET_PROD", "token-x")
    monkeypatch.setenv("SIGNET_REGISTRY_ORIGIN_PROD", declared)

    instance, _ = make_instance(
        backend_url=backend, auth_type=AuthType.BEARER, secret_env="SIGNET_REGISTRY_SECRET_PROD"
    )

    assert Instance.objects.get(pk=instance.pk).registry_client()._static_token == "token-x"


# --- the admin ----------------------------------------------------------------------------


def test_the_admin_refuses_moving_the_origin_with_the_prefilled_secret_env(
    instance_a, home, attacker
):
    client = Client()
    client.force_login(_editor(instance_a, is_staff=True))
    page = client.get(f"{ADMIN}/instance/{instance_a.pk}/change/").content.decode()
    assert 'value="SIGNET_REGISTRY_SECRET_A"' in page  # the form sends it back as it is
    before = db_snapshot()

    response = client.post(
        f"{ADMIN}/instance/{instance_a.pk}/change/",
        {
            "region": instance_a.region,
            "description": "",
            "backend_url": attacker.url,
            "auth_type": "bearer",
            "username": "",
            "secret": "",
            "secret_env": "SIGNET_REGISTRY_SECRET_A",
            "default_domain": instance_a.default_domain,
            "custom_domains": "",
            "_save": "Save",
        },
    )

    assert response.status_code == 200  # the form again, with the error
    html = response.content.decode()
    assert "SIGNET_REGISTRY_ORIGIN_A" in html
    assert PASSWORD_A not in html
    assert db_snapshot() == before
    assert not AuditEvent.objects.filter(action="registry.instance.updated").exists()
    _sync("prod")
    assert attacker.requests == []
    assert _bearers(home)[:1] == [f"Bearer {PASSWORD_A}"]


# --- the API ------------------------------------------------------------------------------


@pytest.mark.parametrize("with_backend_url", [True, False])
def test_the_api_refuses_instance_b_naming_a_variable_bound_to_another_origin(
    instance_a, attacker, with_backend_url
):
    instance_b, _ = make_instance(
        "other", backend_url="http://127.0.0.1:9", auth_type=AuthType.BEARER, secret="b-token"
    )
    api = token_client(_editor(instance_b))  # may change B only
    change = {"auth_type": "bearer", "secret_env": "SIGNET_REGISTRY_SECRET_A"}
    if with_backend_url:
        change["backend_url"] = attacker.url
    before = db_snapshot()

    response = api.patch(f"/api/v1/registry/instances/{instance_b.pk}/", change, format="json")

    assert response.status_code == 400, response.content
    body = response.json()
    assert "SIGNET_REGISTRY_ORIGIN_A" in " ".join(body["fields"]["secret_env"])
    assert PASSWORD_A not in json.dumps(body)
    assert db_snapshot() == before
    assert Instance.objects.get(pk=instance_b.pk).secret() == "b-token"
    assert attacker.requests == []


def test_the_api_refuses_moving_the_origin_while_naming_the_variable_again(
    instance_a, home, attacker
):
    api = token_client(_editor(instance_a))
    before = db_snapshot()

    response = api.patch(
        f"/api/v1/registry/instances/{instance_a.pk}/",
        {"backend_url": attacker.url, "secret_env": "SIGNET_REGISTRY_SECRET_A"},
        format="json",
    )

    assert response.status_code == 400, response.content
    assert "SIGNET_REGISTRY_ORIGIN_A" in response.json()["message"]
    assert db_snapshot() == before
    _sync("prod")
    assert attacker.requests == []


def test_another_instance_may_use_the_variable_at_the_bound_origin(instance_a, home):
    other, _ = make_instance(
        "mirror",
        backend_url=f"{home.url}/mirror",
        auth_type=AuthType.BEARER,
        secret_env="SIGNET_REGISTRY_SECRET_A",
    )

    assert Instance.objects.get(pk=other.pk).registry_client()._static_token == PASSWORD_A


def test_a_missing_companion_is_refused_on_save_naming_what_to_set(monkeypatch):
    monkeypatch.setenv("SIGNET_REGISTRY_SECRET_NEW", "token-y")
    monkeypatch.delenv("SIGNET_REGISTRY_ORIGIN_NEW", raising=False)

    with pytest.raises(ValidationFailed) as error:
        make_instance(
            backend_url="https://127.0.0.1:8443",
            auth_type=AuthType.BEARER,
            secret_env="SIGNET_REGISTRY_SECRET_NEW",
        )

    message = error.value.fields["secret_env"][0]
    assert "SIGNET_REGISTRY_ORIGIN_NEW is not set" in message
    assert "SIGNET_REGISTRY_ORIGIN_NEW=https://127.0.0.1:8443" in message
    assert "token-y" not in message
    assert not Instance.objects.exists()


@pytest.mark.parametrize(
    "declared",
    [
        "https://127.0.0.1:8443/v2",
        "https://127.0.0.1:8443?x=1",
        "127.0.0.1:8443",
        "ftp://127.0.0.1:8443",
        "https://user:pw@127.0.0.1:8443",
        "https://127.0.0.1:port",
    ],
)
def test_a_companion_that_is_not_an_origin_is_refused(monkeypatch, declared):
    monkeypatch.setenv("SIGNET_REGISTRY_ORIGIN_NEW", declared)

    with pytest.raises(ValidationFailed) as error:
        make_instance(
            backend_url="https://127.0.0.1:8443",
            auth_type=AuthType.BEARER,
            secret_env="SIGNET_REGISTRY_SECRET_NEW",
        )

    assert "SIGNET_REGISTRY_ORIGIN_NEW is not an origin" in error.value.fields["secret_env"][0]
    assert not Instance.objects.exists()


def test_the_companion_variable_cannot_be_used_as_a_secret(instance_a, home):
    api = token_client(_editor(instance_a))

    response = api.patch(
        f"/api/v1/registry/instances/{instance_a.pk}/",
        {"secret_env": "SIGNET_REGISTRY_ORIGIN_A"},
        format="json",
    )

    assert response.status_code == 400, response.content
    assert "SIGNET_REGISTRY_SECRET_<NAME>" in response.json()["fields"]["secret_env"][0]
    Instance.objects.filter(pk=instance_a.pk).update(secret_env="SIGNET_REGISTRY_ORIGIN_A")
    with pytest.raises(InstanceMisconfigured):
        Instance.objects.get(pk=instance_a.pk).registry_client()
    assert home.requests == []


# --- read time: the binding is checked again ----------------------------------------------


def _moved_behind_signets_back(monkeypatch, instance, attacker) -> None:
    Instance.objects.filter(pk=instance.pk).update(backend_url=attacker.url)


def _rebound_by_the_operator(monkeypatch, instance, attacker) -> None:
    monkeypatch.setenv("SIGNET_REGISTRY_ORIGIN_A", "https://registry.example.com")


def _companion_removed(monkeypatch, instance, attacker) -> None:
    monkeypatch.delenv("SIGNET_REGISTRY_ORIGIN_A")


@pytest.mark.parametrize(
    "change",
    [
        _moved_behind_signets_back,
        _rebound_by_the_operator,
        _companion_removed,
    ],
)
def test_a_binding_that_no_longer_matches_refuses_to_build_the_client(
    instance_a, home, attacker, monkeypatch, caplog, change
):
    change(monkeypatch, instance_a, attacker)

    with pytest.raises(CommandError) as error:
        _sync("prod")

    assert home.requests == [] and attacker.requests == []  # nothing sent anywhere
    message = str(error.value)
    assert "registry credential cannot be used: ask an instance editor" in message
    assert "SIGNET_REGISTRY_" not in message and attacker.url not in message
    assert "SIGNET_REGISTRY_ORIGIN_A" in caplog.text  # the operator finds the cause
    assert PASSWORD_A not in message + caplog.text
    with pytest.raises(InstanceMisconfigured) as refused:
        Instance.objects.get(pk=instance_a.pk).registry_client()
    assert refused.value.http_status == 502


def test_a_later_save_shows_the_editor_why_the_binding_fails(instance_a, monkeypatch):
    _rebound_by_the_operator(monkeypatch, instance_a, None)

    with pytest.raises(ValidationFailed) as error:
        services.update_instance(instance=instance_a, description="touched")

    assert "SIGNET_REGISTRY_ORIGIN_A" in error.value.fields["secret_env"][0]
    assert Instance.objects.get(pk=instance_a.pk).description == ""


# --- backend_url takes no query string or fragment ----------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:5000/?x=1",
        "http://127.0.0.1:5000/v2#frag",
        "http://127.0.0.1:5000?",
    ],
)
def test_it_refuses_a_backend_url_with_a_query_or_fragment(url):
    api = token_client(make_user(perms=["registry.add_instance"]))

    response = api.post(
        "/api/v1/registry/instances/",
        {
            "name": "prod",
            "backend_url": url,
            "default_domain": "registry.example.com",
        },
        format="json",
    )

    assert response.status_code == 400, response.content
    assert "query string" in response.json()["fields"]["backend_url"][0]
    assert not Instance.objects.exists()
