"""An instance whose registry credential cannot be used answers 502, and tells readers
whom to ask without naming the environment variable, its companion or the backend.

The cause (which variable, which origin) is Signet's configuration: readers may see the
answer of ``verify`` and a signature's failure reason, but not ``secret_env`` or
``backend_url``; the log carries the cause for the operator.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from accounts.models import Role
from kms import services as kms_services
from kms.models import AuthorizedService
from registry import services as registry_services
from registry.models import AuthType, Instance, Manifest
from signing import services
from signing.models import Signature, SignatureStatus
from tests.accounts.support import grant
from tests.factories import make_key, make_user
from tests.registry.conftest import token_client
from tests.signing.conftest import envelope, push_event
from tests.support.stub_registry import Reply, SeenRequest, StubRegistry

pytestmark = pytest.mark.django_db

API = "/api/v1/signing"
DOMAIN = "registry.credential.test"
DIGEST = "sha256:" + "ab" * 32
SECRET = "token-of-the-registry-Ut40"


def _answer(request: SeenRequest) -> Reply:
    return Reply(200, b"{}", {"Content-Type": "application/json"})


@pytest.fixture
def stubs() -> Iterator[tuple[StubRegistry, StubRegistry]]:
    with StubRegistry(_answer) as home, StubRegistry(_answer) as elsewhere:
        yield home, elsewhere


@pytest.fixture(params=["moved behind Signet's back", "variable unset"])
def instance(request, monkeypatch, stubs) -> Instance:
    home, elsewhere = stubs
    monkeypatch.setenv("SIGNET_REGISTRY_SECRET_PROD", SECRET)
    monkeypatch.setenv("SIGNET_REGISTRY_ORIGIN_PROD", home.url)
    instance, _ = registry_services.create_instance(
        name="prod",
        backend_url=home.url,
        default_domain=DOMAIN,
        auth_type=AuthType.BEARER,
        secret_env="SIGNET_REGISTRY_SECRET_PROD",
    )
    namespace = registry_services.create_namespace(instance=instance, name="team")
    kms_services.grant_service_authorization(service=AuthorizedService.REGISTRY_SIGNING)
    services.create_policy(namespace=namespace, name="team-policy", key=make_key("signer"))
    registry_services.record_events(
        instance=instance, envelope=envelope(push_event("team/app", DIGEST, tag="v1"))
    )
    if request.param == "variable unset":
        monkeypatch.delenv("SIGNET_REGISTRY_SECRET_PROD")
    else:
        Instance.objects.filter(pk=instance.pk).update(backend_url=elsewhere.url)
    return Instance.objects.get(pk=instance.pk)


def _reader(instance: Instance):
    user = make_user(perms=["signing.view_signature"])
    grant(user, instance, role=Role.READER)
    return token_client(user)


def _hidden(text: str, stubs) -> bool:
    return all(
        secret not in text
        for secret in ("SIGNET_REGISTRY_", SECRET, stubs[0].url, stubs[1].url, "127.0.0.1")
    )


def test_verify_answers_502_without_naming_the_variable(instance, stubs, caplog):
    response = _reader(instance).post(
        f"{API}/verify/", {"image": f"{DOMAIN}/team/app:v1"}, format="json"
    )

    assert response.status_code == 502, response.content
    body = response.json()
    assert body["code"] == "FailedOperation.InstanceMisconfigured"
    assert "ask an instance editor" in body["message"]
    assert _hidden(json.dumps(body), stubs)
    assert stubs[0].requests == [] and stubs[1].requests == []
    assert "SIGNET_REGISTRY_" in caplog.text and SECRET not in caplog.text  # the cause


def test_a_failed_signature_tells_readers_whom_to_ask(instance, stubs):
    services.request_signing(manifests=list(Manifest.objects.filter(digest=DIGEST)))

    row = Signature.objects.get(manifest__digest=DIGEST)
    assert row.status == SignatureStatus.FAILED
    assert row.failure_code == "FailedOperation.InstanceMisconfigured"
    listed = _reader(instance).get(f"{API}/signatures/")
    assert listed.status_code == 200, listed.content
    seen = listed.json()["results"][0]
    assert "ask an instance editor" in seen["failure_reason"]
    assert _hidden(json.dumps(seen), stubs)
    assert stubs[0].requests == [] and stubs[1].requests == []
