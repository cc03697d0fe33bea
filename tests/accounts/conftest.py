"""The scene shared by the access-control tests: two registry instances, personas.

``prod`` (a real docker-registry on loopback) has namespaces ``team`` (policy
``team-policy``, tags ``team/app:v1`` signed and ``v2`` unsigned) and ``other`` (no
policy); ``elsewhere`` (dead backend) has ``ext``; ``bare`` has no namespace. Personas
(``scene.users``): anon, nogrant, other (reader of elsewhere), outsider (operator of
elsewhere), reader and operator of prod, admin (superuser); each has an API token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from accounts.models import InstanceMembership, Role
from apitokens.models import ApiToken
from audit.models import AuditEvent
from kms import services as kms_services
from kms.models import AuthorizedService, Key, ServiceAuthorization
from registry import services as registry_services
from registry.models import Instance, Manifest, Namespace, Repository, Tag
from signing import services as signing_services
from signing.models import Signature, SignatureStatus, SigningPolicy
from tests.accounts.support import grant
from tests.factories import make_key, make_token, make_user
from tests.support.oci import push_image

# --- the scene -------------------------------------------------------------------------------


@dataclass
class Scene:
    prod: Instance
    elsewhere: Instance
    team: Namespace
    other_ns: Namespace
    key: Key
    spare: Key  # enabled, in no policy
    retired: Key  # disabled
    pending: Key  # pending deletion
    bare: Instance  # no namespaces
    policy: SigningPolicy
    signed: Signature
    v1: Tag
    v2: Tag
    event: AuditEvent
    users: dict[str, Any]
    tokens: dict[str, str] = field(default_factory=dict)  # persona -> its API token

    @property
    def domain(self) -> str:
        return self.prod.default_domain


@pytest.fixture
def scene(db, registry_server, registry_client) -> Scene:
    prod, _token = registry_services.create_instance(
        name="prod", backend_url=registry_server.url, default_domain=registry_server.host
    )
    elsewhere, _token = registry_services.create_instance(
        name="elsewhere", backend_url="http://127.0.0.1:9", default_domain="else.example.com"
    )
    team = registry_services.create_namespace(instance=prod, name="team")
    other_ns = registry_services.create_namespace(instance=prod, name="other")
    registry_services.create_namespace(instance=elsewhere, name="ext")
    kms_services.grant_service_authorization(service=AuthorizedService.REGISTRY_SIGNING)
    key = make_key("signer")
    spare = make_key("spare")
    retired = make_key("retired")
    kms_services.disable_key(key_id=str(retired.key_id))
    pending = make_key("pending")
    kms_services.disable_key(key_id=str(pending.key_id))
    kms_services.schedule_key_deletion(key_id=str(pending.key_id), pending_window_in_days=7)
    bare, _token = registry_services.create_instance(
        name="bare", backend_url="http://127.0.0.1:9", default_domain="bare.example.com"
    )
    push_image(registry_client, "team/app", "v1", seed="team/app:v1")
    push_image(registry_client, "team/app", "v2", seed="team/app:v2")
    assert not registry_services.sync_instance(instance=prod).errors
    policy = signing_services.create_policy(namespace=team, name="team-policy", key=key).policy
    v1 = Tag.objects.get(repository__name="team/app", name="v1")
    v2 = Tag.objects.get(repository__name="team/app", name="v2")
    signing_services.request_signing(manifests=[v1.manifest])
    signed = Signature.objects.get(manifest=v1.manifest)
    assert signed.status == SignatureStatus.SIGNED
    event = AuditEvent.objects.filter(instance_name="prod").order_by("id").first()
    assert event is not None

    users = {
        "anon": None,
        "nogrant": make_user("nogrant", is_staff=True),
        "other": make_user("other-reader", is_staff=True),
        "outsider": make_user("else-operator", is_staff=True),
        "reader": make_user("reader", is_staff=True),
        "operator": make_user("operator", is_staff=True),
        "admin": make_user("admin", is_staff=True, is_superuser=True),
    }
    grant(users["other"], elsewhere, role=Role.READER)
    grant(users["outsider"], elsewhere, role=Role.OPERATOR)
    grant(users["reader"], prod, role=Role.READER)
    grant(users["operator"], prod, role=Role.OPERATOR)
    tokens = {name: make_token(user) for name, user in users.items() if user is not None}
    return Scene(
        prod=prod,
        elsewhere=elsewhere,
        team=team,
        other_ns=other_ns,
        key=key,
        spare=spare,
        retired=retired,
        pending=pending,
        bare=bare,
        policy=policy,
        signed=signed,
        v1=v1,
        v2=v2,
        event=event,
        users=users,
        tokens=tokens,
    )


def client_for(scene: Scene, persona: str) -> APIClient:
    client = APIClient()
    if scene.users[persona] is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Token {scene.tokens[persona]}")
    return client


def snapshot() -> dict[str, Any]:
    """Every row of the tables an endpoint could change: equal means unchanged."""

    def rows(model) -> list[dict[str, Any]]:
        return [
            {k: bytes(v) if isinstance(v, memoryview) else v for k, v in row.items()}
            for row in model.objects.order_by("pk").values()
        ]

    return {
        model._meta.label: rows(model)
        for model in (
            Instance,
            Namespace,
            Repository,
            Tag,
            Manifest,
            SigningPolicy,
            Signature,
            Key,
            ServiceAuthorization,
            ApiToken,
            InstanceMembership,
            AuditEvent,
            get_user_model(),
        )
    }
