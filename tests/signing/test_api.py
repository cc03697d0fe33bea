"""The signing REST API (/api/v1/signing/ and /api/v1/registry/tags/<id>/sign/).

Everything runs against a real docker-registry on loopback and the local KMS: images
are pushed to the registry, recorded in Signet by ``registry.services.sync_instance``
(so they are *existing* images, unsigned until asked), and signatures end up as real
``.sig`` artifacts that the tests read back from the registry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from kms import services as kms_services
from kms.models import AuthorizedService, Key, KeyUsage
from registry import services as registry_services
from registry.client import RegistryClient
from registry.models import Instance, Manifest, Namespace, Tag
from signing import artifacts, services
from signing.api.serializers import verification_snippets
from signing.errors import InvalidPolicy, KeyNotSuitable
from signing.models import ArtifactCleanup, Signature, SignatureStatus, SigningPolicy, Trigger
from signing.payload import signature_tag
from tests.accounts.support import grant
from tests.factories import make_key, make_token, make_user
from tests.support.oci import push_image, push_index
from tests.support.registry_server import RegistryServer

pytestmark = [pytest.mark.django_db, pytest.mark.registry_server]

API = "/api/v1/signing"
DEAD_BACKEND = "http://127.0.0.1:9"

ALL_SIGNING_PERMS = [
    "signing.view_signingpolicy",
    "signing.add_signingpolicy",
    "signing.change_signingpolicy",
    "signing.delete_signingpolicy",
    "signing.view_signature",
    "signing.sign_images",
    "registry.view_namespace",
]


# --- set-up ---------------------------------------------------------------------------------


def token_client(user) -> APIClient:
    token = make_token(user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def client_with(*perms: str, member_of: Instance | None = None) -> APIClient:
    """A user with ``perms``; with ``member_of``, also an operator of that instance (without
    a membership a sub-account sees no instance at all)."""
    user = make_user(perms=list(perms))
    if member_of is not None:
        grant(user, member_of)
    return token_client(user)


@dataclass
class Env:
    server: RegistryServer
    registry: RegistryClient
    instance: Instance
    key: Key
    team: Namespace  # has a policy (made by the tests that want one)
    other: Namespace  # never has a policy unless a test creates one
    admin: APIClient

    @property
    def domain(self) -> str:
        return self.instance.default_domain

    def push(self, repository: str, tag: str, *, seed: str | None = None) -> str:
        return push_image(self.registry, repository, tag, seed=seed or f"{repository}:{tag}")

    def sync(self) -> None:
        result = registry_services.sync_instance(instance=self.instance)
        assert not result.errors

    def policy(self, namespace: Namespace | None = None, key: Key | None = None) -> SigningPolicy:
        namespace = namespace or self.team
        return services.create_policy(
            namespace=namespace, name=f"{namespace.name}-policy", key=key or self.key
        ).policy

    def tag(self, repository: str, name: str) -> Tag:
        return Tag.objects.select_related("manifest").get(
            repository__name=repository, name=name, repository__namespace__instance=self.instance
        )

    def sig_layers(self, repository: str, tag: str) -> list:
        return artifacts.read_layers(self.registry, repository, self.tag(repository, tag).digest)

    def has_sig(self, repository: str, digest: str) -> bool:
        return self.registry.head_manifest(repository, signature_tag(digest)) is not None


@pytest.fixture
def env(db, registry_server, registry_client) -> Env:
    instance, _token = registry_services.create_instance(
        name="prod",
        backend_url=registry_server.url,
        default_domain=registry_server.host,
        custom_domains=["registry.example.com"],
    )
    key = make_key("signer")
    kms_services.grant_service_authorization(service=AuthorizedService.REGISTRY_SIGNING)
    team = registry_services.create_namespace(instance=instance, name="team")
    other = registry_services.create_namespace(instance=instance, name="other")
    return Env(
        server=registry_server,
        registry=registry_client,
        instance=instance,
        key=key,
        team=team,
        other=other,
        admin=token_client(make_user(is_superuser=True, is_staff=True)),
    )


@pytest.fixture
def scenario(env: Env) -> dict[str, Any]:
    """team (with policy): app:v1 signed, app:v2 failed; other (no policy): tool:v1."""
    env.push("team/app", "v1")
    env.push("team/app", "v2")
    env.push("other/tool", "v1")
    env.sync()
    policy = env.policy()
    services.request_signing(manifests=[env.tag("team/app", "v1").manifest])
    # A KMS failure (the key disabled for a moment) leaves v2 failed.
    kms_services.disable_key(key_id=str(env.key.key_id))
    services.request_signing(manifests=[env.tag("team/app", "v2").manifest])
    kms_services.enable_key(key_id=str(env.key.key_id))
    signed = Signature.objects.get(manifest=env.tag("team/app", "v1").manifest)
    failed = Signature.objects.get(manifest=env.tag("team/app", "v2").manifest)
    assert (signed.status, failed.status) == (SignatureStatus.SIGNED, SignatureStatus.FAILED)
    return {"policy": policy, "signed": signed, "failed": failed}


def snapshot(env: Env) -> dict[str, Any]:
    """Signet's signing and registry rows plus the registry's tags: equal means unchanged."""

    def rows(model) -> list[dict[str, Any]]:
        return [
            {k: bytes(v) if isinstance(v, memoryview) else v for k, v in row.items()}
            for row in model.objects.order_by("pk").values()
        ]

    remote = {
        repository: sorted(env.registry.list_tags(repository))
        for repository in env.registry.catalog()
    }
    return {
        "policies": rows(SigningPolicy),
        "signatures": rows(Signature),
        "cleanups": rows(ArtifactCleanup),
        "namespaces": rows(Namespace),
        "tags": rows(Tag),
        "registry": remote,
    }


# --- permissions ----------------------------------------------------------------------------


def _endpoints(env: Env, data: dict[str, Any]) -> dict[str, tuple]:
    """name -> (method, url, body, required permission(s), status when allowed)."""
    policy, signed, failed = data["policy"], data["signed"], data["failed"]
    tag = env.tag("team/app", "v1")
    return {
        "list policies": ("get", f"{API}/policies/", None, "signing.view_signingpolicy", 200),
        "retrieve policy": (
            "get",
            f"{API}/policies/{policy.pk}/",
            None,
            "signing.view_signingpolicy",
            200,
        ),
        "delete preview": (
            "get",
            f"{API}/policies/{policy.pk}/delete-preview/",
            None,
            "signing.view_signingpolicy",
            200,
        ),
        "create policy": (
            "post",
            f"{API}/policies/",
            {
                "instance": "prod",
                "namespace": "other",
                "name": "other-policy",
                "key": str(env.key.key_id),
            },
            "signing.add_signingpolicy",
            201,
        ),
        "update policy": (
            "patch",
            f"{API}/policies/{policy.pk}/",
            {"disabled": True},
            "signing.change_signingpolicy",
            200,
        ),
        "delete policy": (
            "delete",
            f"{API}/policies/{policy.pk}/",
            None,
            "signing.delete_signingpolicy",
            200,
        ),
        "resign policy": (
            "post",
            f"{API}/policies/{policy.pk}/resign/",
            {},
            "signing.sign_images",
            200,
        ),
        "retry policy": (
            "post",
            f"{API}/policies/{policy.pk}/retry/",
            {},
            "signing.sign_images",
            200,
        ),
        "list signatures": ("get", f"{API}/signatures/", None, "signing.view_signature", 200),
        "retrieve signature": (
            "get",
            f"{API}/signatures/{signed.pk}/",
            None,
            "signing.view_signature",
            200,
        ),
        "retry signature": (
            "post",
            f"{API}/signatures/{failed.pk}/retry/",
            {},
            "signing.sign_images",
            200,
        ),
        "sign": (
            "post",
            f"{API}/sign/",
            {"instance": "prod", "namespace": "team", "repository": "app", "tag": "v2"},
            "signing.sign_images",
            200,
        ),
        "sign tag": (
            "post",
            f"/api/v1/registry/tags/{tag.pk}/sign/",
            {},
            "signing.sign_images",
            200,
        ),
        "verify": (
            "post",
            f"{API}/verify/",
            {"image": f"{env.domain}/team/app:v1"},
            "signing.view_signature",
            200,
        ),
        "namespaces": (
            "get",
            f"{API}/namespaces/",
            None,
            ("registry.view_namespace", "signing.view_signingpolicy"),
            200,
        ),
    }


ENDPOINTS = [
    "list policies",
    "retrieve policy",
    "delete preview",
    "create policy",
    "update policy",
    "delete policy",
    "resign policy",
    "retry policy",
    "list signatures",
    "retrieve signature",
    "retry signature",
    "sign",
    "sign tag",
    "verify",
    "namespaces",
]


def _call(client: APIClient, method: str, url: str, body: Any):
    if body is None:
        return getattr(client, method)(url)
    return getattr(client, method)(url, body, format="json")


@pytest.mark.parametrize("name", ENDPOINTS)
def test_each_endpoint_answers_401_to_anonymous_403_without_its_permission_and_serves_with_it(
    env, scenario, name, django_capture_on_commit_callbacks
):
    method, url, body, required, allowed_status = _endpoints(env, scenario)[name]
    required = (required,) if isinstance(required, str) else required
    before = snapshot(env)

    anonymous = _call(APIClient(), method, url, body)
    assert anonymous.status_code == 401, anonymous.content
    assert anonymous.json()["code"] == "AuthFailure"
    assert snapshot(env) == before

    for missing in required:
        # Every other signing permission, but not this one: refused, nothing changes.
        others = [perm for perm in ALL_SIGNING_PERMS if perm != missing]
        refused = _call(client_with(*others), method, url, body)
        assert refused.status_code == 403, refused.content
        assert refused.json() == {
            "code": "UnauthorizedOperation",
            "message": f"This action needs the permission {missing!r}.",
        }
        assert snapshot(env) == before

    with django_capture_on_commit_callbacks(execute=True):
        allowed = _call(client_with(*required, member_of=env.instance), method, url, body)
    assert allowed.status_code == allowed_status, allowed.content


def test_a_superuser_may_use_every_endpoint_without_explicit_permissions(env, scenario):
    for name in ["list policies", "list signatures", "sign", "verify", "namespaces"]:
        method, url, body, _required, allowed_status = _endpoints(env, scenario)[name]
        response = _call(env.admin, method, url, body)
        assert response.status_code == allowed_status, (name, response.content)


def test_staff_status_alone_grants_no_signing_permission(env, scenario):
    client = token_client(make_user(is_staff=True))

    response = client.post(f"{API}/sign/", {"instance": "prod", "namespace": "team"}, format="json")

    assert response.status_code == 403
    assert Signature.objects.get(pk=scenario["failed"].pk).status == SignatureStatus.FAILED


# --- policies: create -----------------------------------------------------------------------


def _create(env: Env, **overrides: Any):
    body = {
        "instance": "prod",
        "namespace": "team",
        "name": "team-policy",
        "key": str(env.key.key_id),
        **overrides,
    }
    body = {k: v for k, v in body.items() if v is not _OMIT}
    return env.admin.post(f"{API}/policies/", body, format="json")


_OMIT = object()


def test_it_creates_a_policy_and_renders_key_health_counts_and_verification_snippets(env):
    env.push("team/app", "v1")
    env.sync()

    response = _create(env, disabled=False)

    assert response.status_code == 201, response.content
    body = response.json()
    policy = SigningPolicy.objects.get()
    assert body["id"] == policy.pk
    assert body["name"] == "team-policy"
    assert (body["instance"], body["instance_name"]) == (env.instance.pk, "prod")
    assert (body["namespace"], body["namespace_name"]) == (env.team.pk, "team")
    assert body["key_id"] == str(env.key.key_id)
    assert body["key_alias"] == "signer"
    assert body["kms_region"] == env.key.region == policy.kms_region
    assert body["domain"] == env.instance.default_domain == policy.domain
    assert body["disabled"] is False and body["enabled"] is True
    assert body["health"] == {"ok": True, "message": "Signing new pushes."}
    assert body["signatures"] == {"total": 0, "signed": 0, "pending": 0, "failed": 0}
    assert body["created_by"] == policy.created_by.username
    assert body["public_key_pem"] == env.key.public_key_pem
    assert body["public_key_pem"].startswith("-----BEGIN PUBLIC KEY-----")
    assert body["warnings"] == []
    assert "sealed" not in json.dumps(body) and "PRIVATE" not in json.dumps(body)
    snippets = body["verification"]
    policy_json = json.loads(snippets["policy_json"])
    requirement = policy_json["transports"]["docker"][f"{env.domain}/team"][0]
    assert requirement["type"] == "sigstoreSigned"
    assert requirement["signedIdentity"] == {"type": "matchRepository"}
    assert policy_json["default"] == [{"type": "reject"}]
    assert f'"{env.domain}":\n    use-sigstore-attachments: true' in snippets["registries_d"]
    assert snippets["cosign_command"].startswith(
        f"cosign verify --key {snippets['public_key_file']} --insecure-ignore-tlog "
        f"{env.domain}/team/"
    )
    # A policy signs new pushes only: the existing tag stays unsigned.
    assert Signature.objects.count() == 0


def test_it_creates_a_policy_by_instance_id_with_a_custom_domain_and_disabled(env):
    response = _create(env, instance=env.instance.pk, domain="registry.example.com", disabled=True)

    assert response.status_code == 201, response.content
    policy = SigningPolicy.objects.get()
    assert (policy.domain, policy.disabled) == ("registry.example.com", True)
    assert response.json()["health"] == {
        "ok": True,
        "message": "Disabled: new pushes are not signed automatically.",
    }


def _service_error(env: Env, *, namespace=None, name="team-policy", key=None, **kwargs):
    with pytest.raises(Exception) as caught:
        services.create_policy(
            namespace=namespace or env.team, name=name, key=key or str(env.key.key_id), **kwargs
        )
    return caught.value


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("a", "InvalidPolicyName"),
        ("Team", "InvalidPolicyName"),
        ("-team", "InvalidPolicyName"),
        ("team-", "InvalidPolicyName"),
        ("te__am", "InvalidPolicyName"),
        ("x" * 51, "InvalidPolicyName"),
    ],
)
def test_it_rejects_an_invalid_policy_name_with_the_services_message(env, name, code):
    expected = _service_error(env, name=name)
    assert isinstance(expected, InvalidPolicy)

    response = _create(env, name=name)

    assert response.status_code == 400
    assert response.json() == {
        "code": code,
        "message": expected.message,
        "fields": {"name": [expected.message]},
    }
    assert SigningPolicy.objects.count() == 0


def test_it_rejects_an_unknown_key_on_the_key_field(env):
    missing = "11111111-2222-3333-4444-555555555555"
    expected = _service_error(env, key=missing)

    response = _create(env, key=missing)

    assert response.status_code == 400
    assert response.json() == {
        "code": "KeyNotFound",
        "message": expected.message,
        "fields": {"key": [expected.message]},
    }
    assert SigningPolicy.objects.count() == 0


@pytest.mark.parametrize("problem", ["disabled", "pending-delete", "ecc"])
def test_it_refuses_an_unsuitable_key_with_409_and_the_services_message(env, problem):
    if problem == "ecc":
        key = make_key("ecc-key", key_usage=KeyUsage.ECC)
        code = "InvalidKeyUsage"
    elif problem == "disabled":
        key = kms_services.disable_key(key_id=make_key("off").key_id)
        code = "KeyDisabled"
    else:
        key = make_key("going")
        kms_services.disable_key(key_id=key.key_id)
        kms_services.schedule_key_deletion(key_id=key.key_id, pending_window_in_days=7)
        code = "KeyPendingDelete"
    expected = _service_error(env, key=str(key.key_id))
    assert isinstance(expected, KeyNotSuitable)

    response = _create(env, key=str(key.key_id))

    assert response.status_code == 409
    assert response.json() == {"code": code, "message": expected.message}
    assert SigningPolicy.objects.count() == 0


def test_it_refuses_a_policy_while_the_signing_service_is_not_authorized(env):
    kms_services.revoke_service_authorization(service=AuthorizedService.REGISTRY_SIGNING)
    expected = _service_error(env)

    response = _create(env)

    assert response.status_code == 403
    assert response.json() == expected.as_dict()
    assert response.json()["code"] == "UnauthorizedOperation.ServiceNotAuthorized"
    assert "registry-signing" in response.json()["message"]
    assert SigningPolicy.objects.count() == 0


def test_it_rejects_a_kms_region_that_is_not_the_keys(env):
    other_region = "ap-shanghai" if env.key.region != "ap-shanghai" else "ap-beijing"
    expected = _service_error(env, kms_region=other_region)

    response = _create(env, kms_region=other_region)

    assert response.status_code == 400
    assert response.json() == {
        "code": "InvalidKmsRegion",
        "message": expected.message,
        "fields": {"kms_region": [expected.message]},
    }
    assert SigningPolicy.objects.count() == 0


def test_it_rejects_a_domain_that_is_not_one_of_the_instances(env):
    expected = _service_error(env, domain="elsewhere.example.com")

    response = _create(env, domain="elsewhere.example.com")

    assert response.status_code == 400
    assert response.json()["code"] == "InvalidDomain"
    assert response.json()["fields"] == {"domain": [expected.message]}
    assert SigningPolicy.objects.count() == 0


def test_it_accepts_a_key_in_another_region_with_a_warning(env):
    key = make_key("far", region="ap-singapore")

    response = _create(env, key=str(key.key_id), kms_region="ap-singapore")

    assert response.status_code == 201, response.content
    warnings = response.json()["warnings"]
    assert len(warnings) == 1
    assert "ap-singapore" in warnings[0] and "same region is recommended" in warnings[0]
    assert SigningPolicy.objects.get().kms_region == "ap-singapore"


def test_a_second_policy_for_the_namespace_is_409_policy_exists(env):
    assert _create(env).status_code == 201

    response = _create(env, name="second-policy")

    assert response.status_code == 409
    assert response.json()["code"] == "PolicyExists"
    assert "only one policy per namespace" in response.json()["message"]
    assert list(SigningPolicy.objects.values_list("name", flat=True)) == ["team-policy"]


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"instance": "nowhere"}, "instance", "No registry instance with name 'nowhere'."),
        ({"instance": 999999}, "instance", "No registry instance with id 999999."),
        ({"instance": True}, "instance", "Must be an instance name or a numeric instance id."),
        ({"namespace": "ghost"}, "namespace", "Instance prod has no namespace 'ghost'."),
        ({"name": 12}, "name", "Must be a string."),
        ({"name": _OMIT}, "name", "This field is required."),
        ({"key": _OMIT}, "key", "This field is required."),
        ({"disabled": "yes"}, "disabled", "Must be true or false."),
        ({"colour": "red"}, "colour", "Unknown field."),
    ],
)
def test_it_rejects_malformed_create_input_with_field_errors(env, overrides, field, message):
    response = _create(env, **overrides)

    assert response.status_code == 400, response.content
    assert response.json()["fields"][field] == [message]
    assert SigningPolicy.objects.count() == 0


# --- policies: list, retrieve, update --------------------------------------------------------


def test_it_lists_policies_with_filters_and_counts_in_a_fixed_number_of_queries(env, scenario):
    other_policy = env.policy(env.other)
    SigningPolicy.objects.filter(pk=other_policy.pk).update(disabled=True)

    everything = env.admin.get(f"{API}/policies/").json()
    disabled = env.admin.get(f"{API}/policies/?disabled=true").json()
    by_namespace = env.admin.get(f"{API}/policies/?namespace={env.team.pk}").json()
    by_instance = env.admin.get(f"{API}/policies/?instance=prod").json()
    elsewhere = env.admin.get(f"{API}/policies/?instance=nowhere").json()

    assert [p["namespace_name"] for p in everything["results"]] == ["other", "team"]
    team = everything["results"][1]
    assert team["signatures"] == {"total": 2, "signed": 1, "pending": 0, "failed": 1}
    assert [p["id"] for p in disabled["results"]] == [other_policy.pk]
    assert [p["id"] for p in by_namespace["results"]] == [scenario["policy"].pk]
    assert by_instance["count"] == 2
    assert elsewhere["count"] == 0
    bad = env.admin.get(f"{API}/policies/?disabled=maybe")
    assert bad.status_code == 400
    assert bad.json()["fields"] == {"disabled": ["Expected true or false."]}


def test_the_policy_list_runs_a_fixed_number_of_queries(env, scenario):
    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            response = env.admin.get(f"{API}/policies/")
        assert response.status_code == 200
        assert all(row["health"]["ok"] for row in response.json()["results"])
        return len(queries)

    few = count()
    for name in ("ns-a", "ns-b", "ns-c"):
        env.policy(registry_services.create_namespace(instance=env.instance, name=name))

    assert count() == few


def test_revoking_the_service_grant_turns_every_policy_health_into_an_error(env, scenario):
    env.policy(env.other)
    kms_services.revoke_service_authorization(service=AuthorizedService.REGISTRY_SIGNING)

    rows = env.admin.get(f"{API}/policies/").json()["results"]

    assert [row["health"] for row in rows] == [
        {"ok": False, "message": "The registry signing service is not authorized to use KMS keys."}
    ] * 2


def test_retrieving_an_unknown_policy_is_404_policy_not_found(env):
    response = env.admin.get(f"{API}/policies/424242/")

    assert response.status_code == 404
    assert response.json() == {
        "code": "PolicyNotFound",
        "message": "No signing policy with id 424242.",
    }


def test_a_disabled_key_turns_the_policy_health_into_an_error(env, scenario):
    kms_services.disable_key(key_id=str(env.key.key_id))

    body = env.admin.get(f"{API}/policies/{scenario['policy'].pk}/").json()

    assert body["health"] == {
        "ok": False,
        "message": "Key signer is Disabled: new images are not signed.",
    }
    assert body["key_state"] == "Disabled"


def test_patch_changes_name_domain_and_disabled_through_update_policy(env, scenario):
    policy = scenario["policy"]

    response = env.admin.patch(
        f"{API}/policies/{policy.pk}/",
        {"name": "renamed", "domain": "registry.example.com", "disabled": True},
        format="json",
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["name"], body["domain"], body["disabled"]) == (
        "renamed",
        "registry.example.com",
        True,
    )
    # v1 was signed for the old domain: it is offered for a re-sign.
    assert body["resign_candidates"] == 1
    policy.refresh_from_db()
    assert (policy.name, policy.domain, policy.disabled) == (
        "renamed",
        "registry.example.com",
        True,
    )


def test_a_domain_change_then_resign_signs_for_the_new_domain(env, scenario):
    policy = scenario["policy"]
    env.admin.patch(
        f"{API}/policies/{policy.pk}/", {"domain": "registry.example.com"}, format="json"
    )
    stale = env.admin.get(f"{API}/signatures/{scenario['signed'].pk}/").json()
    assert (stale["signed_with_current_key"], stale["up_to_date"]) == (True, False)
    assert _verify(env, "registry.example.com/team/app:v1").json()["verified"] is False

    response = env.admin.post(f"{API}/policies/{policy.pk}/resign/")

    assert response.status_code == 200, response.content
    assert response.json()["signed"] == 1
    signed = Signature.objects.get(pk=scenario["signed"].pk)
    assert signed.docker_reference == "registry.example.com/team/app"
    assert env.admin.get(f"{API}/signatures/{signed.pk}/").json()["up_to_date"] is True
    assert _verify(env, "registry.example.com/team/app:v1").json()["verified"] is True


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"name": "Bad Name"}, 400, "name"),
        ({"domain": "elsewhere.example.com"}, 400, "domain"),
        ({"namespace": "other"}, 400, "namespace"),
        ({"kms_region": "ap-beijing"}, 400, "kms_region"),
        ({"disabled": 1}, 400, "disabled"),
    ],
)
def test_patch_rejects_invalid_changes_and_changes_nothing(env, scenario, body, status, field):
    policy = scenario["policy"]
    before = snapshot(env)

    response = env.admin.patch(f"{API}/policies/{policy.pk}/", body, format="json")

    assert response.status_code == status, response.content
    assert field in response.json()["fields"]
    assert snapshot(env) == before


def test_patch_to_a_disabled_key_is_409_and_keeps_the_old_key(env, scenario):
    off = kms_services.disable_key(key_id=make_key("off").key_id)

    response = env.admin.patch(
        f"{API}/policies/{scenario['policy'].pk}/", {"key": str(off.key_id)}, format="json"
    )

    assert response.status_code == 409
    assert response.json()["code"] == "KeyDisabled"
    assert SigningPolicy.objects.get().key_id == env.key.key_id


def test_a_key_change_offers_a_resign_and_resign_replaces_the_old_keys_signature(env, scenario):
    policy = scenario["policy"]
    new_key = make_key("signer-2026")

    changed = env.admin.patch(
        f"{API}/policies/{policy.pk}/", {"key": str(new_key.key_id)}, format="json"
    )

    assert changed.status_code == 200, changed.content
    assert changed.json()["resign_candidates"] == 1
    assert changed.json()["key_alias"] == "signer-2026"
    # Until re-signed, the old signature stays valid and visible as the old key's.
    signed = Signature.objects.get(pk=scenario["signed"].pk)
    assert (signed.status, signed.key_id) == (SignatureStatus.SIGNED, env.key.key_id)
    assert [layer.key_fingerprint for layer in env.sig_layers("team/app", "v1")] == [
        env.key.public_key_fingerprint
    ]

    response = env.admin.post(f"{API}/policies/{policy.pk}/resign/", format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["requested"], body["signed"], body["failed"]) == (1, 1, 0)
    assert [(row["id"], row["status"], row["key_id"]) for row in body["signatures"]] == [
        (signed.pk, "signed", str(new_key.key_id))
    ]
    signed.refresh_from_db()
    assert (signed.key_id, signed.trigger) == (new_key.key_id, Trigger.RESIGN)
    assert [layer.key_fingerprint for layer in env.sig_layers("team/app", "v1")] == [
        new_key.public_key_fingerprint
    ]
    verified = env.admin.post(
        f"{API}/verify/", {"image": f"{env.domain}/team/app:v1"}, format="json"
    ).json()
    assert verified["verified"] is True and verified["key_id"] == str(new_key.key_id)


# --- policies: delete -----------------------------------------------------------------------


def test_delete_preview_counts_the_signatures_that_would_go(env, scenario):
    response = env.admin.get(f"{API}/policies/{scenario['policy'].pk}/delete-preview/")

    assert response.status_code == 200
    body = response.json()
    assert body["signatures_to_remove"] == 2
    assert "removes the 2 signature(s) of namespace team" in body["warning"]
    assert "verifying those images will then fail" in body["warning"]
    assert SigningPolicy.objects.count() == 1


def test_delete_removes_the_policy_its_signatures_and_their_registry_artifacts(
    env, scenario, django_capture_on_commit_callbacks
):
    env.push("team/app", "v3")
    env.sync()
    services.request_signing(manifests=[env.tag("team/app", "v3").manifest])
    digests = [env.tag("team/app", tag).digest for tag in ("v1", "v3")]
    assert all(env.has_sig("team/app", digest) for digest in digests)

    with django_capture_on_commit_callbacks(execute=True):
        response = env.admin.delete(f"{API}/policies/{scenario['policy'].pk}/")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["signatures_removed"] == 3
    # Issue 12: the artifact removal is an operation, followed at its URL.
    assert body["operation"]["url"] == f"{API}/operations/{body['operation']['id']}/"
    assert SigningPolicy.objects.count() == 0
    assert Signature.objects.count() == 0
    assert ArtifactCleanup.objects.count() == 0
    assert not any(env.has_sig("team/app", digest) for digest in digests)
    # The images stay; verifying them now fails: there is no policy (key) any more.
    assert Tag.objects.filter(repository__name="team/app").count() == 3
    verify = env.admin.post(f"{API}/verify/", {"image": f"{env.domain}/team/app:v1"}, format="json")
    assert verify.status_code == 409
    assert verify.json()["code"] == "NoSigningPolicy"


def test_delete_with_the_registry_down_keeps_the_artifact_removal_as_pending_work(
    env, scenario, django_capture_on_commit_callbacks
):
    digest = scenario["signed"].manifest.digest
    Instance.objects.filter(pk=env.instance.pk).update(backend_url=DEAD_BACKEND)

    with django_capture_on_commit_callbacks(execute=True):
        response = env.admin.delete(f"{API}/policies/{scenario['policy'].pk}/")

    assert response.status_code == 200
    body = response.json()
    assert body["signatures_removed"] == 2
    # Issue 12: the artifact removal is an operation, followed at its URL.
    assert body["operation"]["url"] == f"{API}/operations/{body['operation']['id']}/"
    assert SigningPolicy.objects.count() == 0
    cleanup = ArtifactCleanup.objects.get()
    assert (cleanup.manifest_digest, cleanup.attempts) == (digest, 1)
    assert env.has_sig("team/app", digest)


# --- signatures -----------------------------------------------------------------------------


def test_it_lists_signatures_with_every_filter(env, scenario):
    signed, failed = scenario["signed"], scenario["failed"]
    other_policy = env.policy(env.other)
    services.request_signing(manifests=[env.tag("other/tool", "v1").manifest])
    tool = Signature.objects.get(policy=other_policy)

    def ids(query: str) -> list[int]:
        response = env.admin.get(f"{API}/signatures/?{query}")
        assert response.status_code == 200, response.content
        return sorted(row["id"] for row in response.json()["results"])

    assert ids("") == sorted([signed.pk, failed.pk, tool.pk])
    assert ids("status=failed") == [failed.pk]
    assert ids("status=signed") == sorted([signed.pk, tool.pk])
    assert ids("trigger=manual") == sorted([signed.pk, failed.pk, tool.pk])
    assert ids("trigger=push") == []
    assert ids(f"policy={other_policy.pk}") == [tool.pk]
    assert ids(f"instance={env.instance.pk}") == sorted([signed.pk, failed.pk, tool.pk])
    assert ids("instance=prod&namespace_name=team") == sorted([signed.pk, failed.pk])
    assert ids("instance=nowhere") == []
    assert ids(f"namespace={env.other.pk}") == [tool.pk]
    assert ids("repository_name=team/app&status=signed") == [signed.pk]
    assert ids(f"repository={signed.manifest.repository_id}") == sorted([signed.pk, failed.pk])
    assert ids(f"digest={failed.manifest.digest}") == [failed.pk]


@pytest.mark.parametrize(
    ("query", "field"),
    [("status=done", "status"), ("trigger=cron", "trigger"), ("policy=x", "policy")],
)
def test_it_rejects_unknown_signature_filter_values(env, query, field):
    response = env.admin.get(f"{API}/signatures/?{query}")

    assert response.status_code == 400
    assert list(response.json()["fields"]) == [field]


def test_a_signature_renders_its_record_tags_and_payload(env, scenario):
    signed = scenario["signed"]

    body = env.admin.get(f"{API}/signatures/{signed.pk}/").json()

    assert body["status"] == "signed"
    assert body["tags"] == ["v1"]
    assert body["repository_name"] == "team/app"
    assert body["digest"] == signed.manifest.digest
    assert body["key_id"] == str(env.key.key_id)
    assert body["key_fingerprint"] == env.key.public_key_fingerprint
    assert body["signed_with_current_key"] is True
    assert body["up_to_date"] is True
    assert body["algorithm"] == "RSA_PKCS1_SHA_256"
    assert body["docker_reference"] == f"{env.domain}/team/app"
    assert json.loads(body["payload"])["critical"]["image"] == {
        "docker-manifest-digest": signed.manifest.digest
    }
    layer = env.sig_layers("team/app", "v1")[0]
    assert body["signature_value"] == layer.signature_b64
    assert (
        body["sig_manifest_digest"]
        == env.registry.head_manifest("team/app", signature_tag(signed.manifest.digest)).digest
    )
    failed = env.admin.get(f"{API}/signatures/{scenario['failed'].pk}/").json()
    assert failed["status"] == "failed"
    assert failed["failure_code"] and failed["failure_reason"]
    assert failed["payload"] is None


def test_the_signature_list_runs_a_fixed_number_of_queries(env, scenario):
    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            response = env.admin.get(f"{API}/signatures/")
        assert response.status_code == 200
        return len(queries)

    few = count()
    for number in range(5):
        env.push("team/app", f"extra-{number}")
    env.sync()
    services.request_signing(manifests=list(Manifest.objects.filter(tags__name__startswith="e")))
    assert Signature.objects.count() == 7

    assert count() == few


def test_retrying_a_failed_signature_signs_it(env, scenario):
    failed = scenario["failed"]

    response = env.admin.post(f"{API}/signatures/{failed.pk}/retry/")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["signed"], body["failed"]) == (1, 0)
    assert body["signature"]["status"] == "signed"
    failed.refresh_from_db()
    assert failed.status == SignatureStatus.SIGNED
    assert env.has_sig("team/app", failed.manifest.digest)


def test_retrying_while_the_registry_is_down_leaves_the_row_failed_with_the_reason(env, scenario):
    failed = scenario["failed"]
    Instance.objects.filter(pk=env.instance.pk).update(backend_url=DEAD_BACKEND)

    response = env.admin.post(f"{API}/signatures/{failed.pk}/retry/")

    assert response.status_code == 200
    assert response.json()["failed"] == 1
    failed.refresh_from_db()
    assert failed.status == SignatureStatus.FAILED
    assert failed.attempts == 2
    assert failed.failure_code == "InternalError.RegistryUnavailable"
    assert "could not connect" in failed.failure_reason


def test_retrying_a_policy_signs_all_its_failed_signatures(env, scenario):
    policy = scenario["policy"]

    response = env.admin.post(f"{API}/policies/{policy.pk}/retry/")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["retried"], body["signed"], body["failed"]) == (1, 1, 0)
    assert [row["status"] for row in body["signatures"]] == ["signed"]
    assert not Signature.objects.filter(status=SignatureStatus.FAILED).exists()


# --- sign -----------------------------------------------------------------------------------


@pytest.fixture
def images(env: Env) -> Env:
    """team/app v1 v2, team/web v1, team/multi:latest (index, 2 children), other/tool v1."""
    env.push("team/app", "v1")
    env.push("team/app", "v2")
    env.push("team/web", "v1")
    push_index(env.registry, "team/multi", "latest", seed="multi")
    env.push("other/tool", "v1")
    env.sync()
    env.policy()
    return env


def _sign(env: Env, **body: Any):
    return env.admin.post(f"{API}/sign/", {"instance": "prod", **body}, format="json")


def _signed_refs() -> set[str]:
    return {
        f"{s.manifest.repository.name}@{s.manifest.digest}"
        for s in Signature.objects.filter(status=SignatureStatus.SIGNED).select_related(
            "manifest__repository"
        )
    }


def test_sign_one_tag_like_tcr_create_signature(images):
    env = images

    response = _sign(env, namespace="team", repository="app", tag="v1")

    assert response.status_code == 200, response.content
    body = response.json()
    digest = env.tag("team/app", "v1").digest
    # Issue 12: the request starts an operation and hands the image to the workers
    # ("queued"; they run inline in tests, hence already signed at answer time).
    assert (body["requested"], body["signed"], body["already_signed"], body["queued"]) == (
        1,
        1,
        0,
        1,
    )
    assert body["operation"]["url"] == f"{API}/operations/{body['operation']['id']}/"
    listed = [(row["repository_name"], row["digest"], row["status"]) for row in body["signatures"]]
    assert listed == [("team/app", digest, "signed")]
    assert _signed_refs() == {f"team/app@{digest}"}
    signature = Signature.objects.get()
    assert signature.trigger == Trigger.MANUAL
    assert signature.triggered_by.is_superuser
    assert env.has_sig("team/app", digest)
    assert not env.has_sig("team/app", env.tag("team/app", "v2").digest)


def test_sign_a_list_of_tags_with_the_full_repository_path(images):
    env = images

    response = _sign(env, namespace="team", repository="team/app", tags=["v1", "v2", "v1"])

    assert response.status_code == 200, response.content
    assert response.json()["signed"] == 2
    assert _signed_refs() == {f"team/app@{env.tag('team/app', tag).digest}" for tag in ("v1", "v2")}


def test_sign_a_whole_repository_including_an_index_and_its_children(images):
    env = images
    index_digest = env.tag("team/multi", "latest").digest
    children = list(
        Manifest.objects.filter(parent_references__parent__digest=index_digest).values_list(
            "digest", flat=True
        )
    )
    assert len(children) == 2

    response = _sign(env, namespace="team", repository="multi")

    assert response.status_code == 200, response.content
    assert (response.json()["requested"], response.json()["signed"]) == (3, 3)
    assert _signed_refs() == {f"team/multi@{d}" for d in [index_digest, *children]}
    assert all(env.has_sig("team/multi", d) for d in [index_digest, *children])


def test_sign_a_whole_namespace_and_again_reports_all_already_signed(images):
    env = images

    first = _sign(env, namespace="team")
    second = _sign(env, namespace="team")

    assert first.status_code == 200, first.content
    assert (first.json()["requested"], first.json()["signed"]) == (6, 6)
    assert (second.json()["signed"], second.json()["already_signed"]) == (0, 6)
    assert len(second.json()["signatures"]) == 6
    assert Signature.objects.count() == 6
    assert not Signature.objects.filter(manifest__repository__name="other/tool").exists()


def test_a_large_answer_lists_the_first_signatures_and_says_it_is_truncated(images, monkeypatch):
    monkeypatch.setattr("signing.api.views.common.MAX_LISTED_SIGNATURES", 2)

    body = _sign(images, namespace="team").json()

    assert body["signed"] == 6
    assert len(body["signatures"]) == 2
    assert body["signatures_truncated"] is True
    small = _sign(images, namespace="team", repository="app", tag="v1").json()
    assert (len(small["signatures"]), small["signatures_truncated"]) == (1, False)


def test_sign_hands_every_image_to_the_workers_whatever_the_synchronous_limit(images, settings):
    env = images
    settings.SIGNING_SYNC_LIMIT = 2

    body = _sign(env, namespace="team").json()

    # Issue 12: the request signs nothing itself, all 6 are queued for the workers
    # (SIGNING_DISPATCH is "inline" in tests: they run at once).
    assert (body["signed"], body["queued"]) == (6, 6)
    assert Signature.objects.filter(status=SignatureStatus.SIGNED).count() == 6


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"namespace": "team", "repository": "app", "tag": "v9"},
            "No image matches tag(s) v9 of repository team/app in instance prod; "
            "nothing was signed.",
        ),
        (
            {"namespace": "team", "repository": "app", "tags": ["v1", "v8", "v9"]},
            "No image matches tag(s) v1, v8, v9 of repository team/app in instance prod "
            "(not found: v8, v9); nothing was signed.",
        ),
        (
            {"namespace": "team", "repository": "ghost"},
            "No image matches repository team/ghost in instance prod; nothing was signed.",
        ),
        (
            {"namespace": "nothing"},
            "No image matches namespace nothing in instance prod; nothing was signed.",
        ),
    ],
)
def test_sign_answers_404_naming_what_was_asked_when_nothing_matches(images, body, message):
    response = _sign(images, **body)

    assert response.status_code == 404
    assert response.json() == {"code": "ImageNotFound", "message": message}
    assert Signature.objects.count() == 0


def test_sign_in_an_unknown_instance_is_404(images):
    response = images.admin.post(
        f"{API}/sign/", {"instance": "nowhere", "namespace": "team"}, format="json"
    )

    assert response.status_code == 404
    assert response.json()["message"] == "No registry instance with name 'nowhere'."


def test_sign_in_a_namespace_without_policy_is_409(images):
    response = _sign(images, namespace="other", repository="tool", tag="v1")

    assert response.status_code == 409
    assert response.json()["code"] == "NoSigningPolicy"
    assert Signature.objects.count() == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "namespace"),
        ({"namespace": "Team!"}, "namespace"),
        ({"namespace": 5}, "namespace"),
        ({"namespace": "team", "tag": "v1"}, "repository"),
        ({"namespace": "team", "tags": ["v1"]}, "repository"),
        ({"namespace": "team", "repository": "app", "tag": "v1", "tags": ["v2"]}, "tags"),
        ({"namespace": "team", "repository": "app", "tags": []}, "tags"),
        ({"namespace": "team", "repository": "app", "tags": "v1"}, "tags"),
        ({"namespace": "team", "repository": "app", "tag": ".hidden"}, "tag"),
        ({"namespace": "team", "repository": "App"}, "repository"),
        ({"namespace": "team", "repository": "app", "digest": "x"}, "digest"),
    ],
)
def test_sign_validates_every_field(images, body, field):
    response = _sign(images, **body)

    assert response.status_code == 400, response.content
    assert response.json()["code"] == "InvalidParameter"
    assert field in response.json()["fields"]
    assert Signature.objects.count() == 0


def test_sign_rejects_a_missing_instance(images):
    response = images.admin.post(f"{API}/sign/", {"namespace": "team"}, format="json")

    assert response.status_code == 400
    assert response.json()["fields"] == {"instance": ["This field is required."]}


def test_the_per_tag_sign_url_signs_that_tag(images):
    env = images
    tag = env.tag("team/web", "v1")

    response = env.admin.post(f"/api/v1/registry/tags/{tag.pk}/sign/")

    assert response.status_code == 200, response.content
    assert response.json()["signed"] == 1
    assert _signed_refs() == {f"team/web@{tag.digest}"}


def test_the_per_tag_sign_url_answers_404_for_an_unknown_tag_and_409_without_policy(images):
    env = images

    unknown = env.admin.post("/api/v1/registry/tags/999999/sign/")
    no_policy = env.admin.post(f"/api/v1/registry/tags/{env.tag('other/tool', 'v1').pk}/sign/")

    assert unknown.status_code == 404
    assert unknown.json() == {"code": "ImageNotFound", "message": "No tag with id 999999."}
    assert no_policy.status_code == 409
    assert Signature.objects.count() == 0


def test_the_registry_tag_api_is_still_routed_beside_the_sign_url(images):
    tag = images.tag("team/app", "v1")

    response = images.admin.get(f"/api/v1/registry/tags/{tag.pk}/")

    assert response.status_code == 200
    assert response.json()["name"] == "v1"


# --- verify ---------------------------------------------------------------------------------


def _verify(env: Env, image: Any):
    return env.admin.post(f"{API}/verify/", {"image": image}, format="json")


def test_verify_is_true_for_a_signed_image_by_tag_and_by_digest(env, scenario):
    digest = scenario["signed"].manifest.digest

    by_tag = _verify(env, f"{env.domain}/team/app:v1")
    by_digest = _verify(env, f"{env.domain}/team/app@{digest}")

    for response in (by_tag, by_digest):
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["verified"] is True
        assert body["digest"] == digest
        assert body["docker_reference"] == f"{env.domain}/team/app"
        assert body["key_id"] == str(env.key.key_id)
        assert body["reasons"] == ["Signature 1 verifies with key signer."]


def test_verify_is_false_for_an_unsigned_image_with_the_reason(env, scenario):
    digest = scenario["failed"].manifest.digest

    body = _verify(env, f"{env.domain}/team/app:v2").json()

    assert body["verified"] is False
    assert body["reasons"] == [f"No signature exists for team/app@{digest}."]


def test_verify_is_false_when_the_policy_key_is_not_the_signing_key(env, scenario):
    new_key = make_key("other-key")
    services.update_policy(policy=scenario["policy"], key=new_key)

    body = _verify(env, f"{env.domain}/team/app:v1").json()

    assert body["verified"] is False
    assert "does not verify with key other-key" in body["reasons"][0]


def test_verify_is_false_for_an_identity_signed_for_another_domain(env, scenario):
    # Signed for the instance's default domain; pulled by its custom domain.
    body = _verify(env, "registry.example.com/team/app:v1").json()

    assert body["verified"] is False
    assert "is not registry.example.com/team/app" in body["reasons"][0]


@pytest.mark.parametrize(
    ("image", "status", "code"),
    [
        ("not an image", 400, "InvalidImage"),
        ("registry.example.com/team/app", 400, "InvalidImage"),
        (42, 400, "InvalidParameter"),
        ("unknown.example.com/team/app:v1", 404, "ImageNotFound"),
        ("{domain}/team/app:v404", 404, "ImageNotFound"),
        ("{domain}/other/tool:v1", 409, "NoSigningPolicy"),
    ],
)
def test_verify_error_statuses(env, scenario, image, status, code):
    if isinstance(image, str):
        image = image.format(domain=env.domain)

    response = _verify(env, image)

    assert response.status_code == status, response.content
    assert response.json()["code"] == code


# --- namespaces with their policy -----------------------------------------------------------


def test_namespaces_show_their_policy_and_filter_by_kms_sign_policy(env, scenario):
    third = registry_services.create_namespace(instance=env.instance, name="third")
    disabled = env.policy(third)
    SigningPolicy.objects.filter(pk=disabled.pk).update(disabled=True)

    def listed(query: str = "") -> list[tuple[str, Any]]:
        response = env.admin.get(f"{API}/namespaces/?{query}")
        assert response.status_code == 200, response.content
        return [(row["name"], row["signing_policy"]) for row in response.json()["results"]]

    policy = scenario["policy"]
    team_policy = {
        "id": policy.pk,
        "name": "team-policy",
        "enabled": True,
        "key_id": str(env.key.key_id),
        "key_alias": "signer",
        "key_state": "Enabled",
    }
    third_policy = {**team_policy, "id": disabled.pk, "name": "third-policy", "enabled": False}
    assert listed() == [("other", None), ("team", team_policy), ("third", third_policy)]
    assert listed("kms_sign_policy=true") == [("team", team_policy), ("third", third_policy)]
    assert listed("kms_sign_policy=false") == [("other", None)]
    assert listed("enabled=true") == [("team", team_policy)]
    assert listed("enabled=false&instance=prod") == [("other", None), ("third", third_policy)]
    assert listed(f"instance={env.instance.pk}&search=ea") == [("team", team_policy)]
    assert listed("instance=nowhere") == []
    bad = env.admin.get(f"{API}/namespaces/?kms_sign_policy=perhaps")
    assert bad.status_code == 400


def test_the_namespace_list_runs_a_fixed_number_of_queries(env, scenario):
    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert env.admin.get(f"{API}/namespaces/").status_code == 200
        return len(queries)

    few = count()
    for name in ("ns-a", "ns-b", "ns-c"):
        env.policy(registry_services.create_namespace(instance=env.instance, name=name))

    assert count() == few


# --- the verification snippets work with the real verifier ---------------------------------


def test_the_policy_snippets_are_valid_for_skopeo(env, scenario, tmp_path):
    """The policy.json and registries.d texts the API shows, used as they are by skopeo."""
    from tests.support.verifiers import offline_env, run_verifier, skopeo_path

    skopeo = skopeo_path()
    policy = SigningPolicy.objects.select_related("namespace__instance", "key").get()
    snippets = verification_snippets(policy)
    key_path = tmp_path / snippets["public_key_file"]
    key_path.write_text(policy.key.public_key_pem)
    policy_json = json.loads(snippets["policy_json"])
    for requirements in policy_json["transports"]["docker"].values():
        requirements[0]["keyPath"] = str(key_path)
    (tmp_path / "policy.json").write_text(json.dumps(policy_json))
    registries_d = tmp_path / "registries.d"
    registries_d.mkdir()
    (registries_d / "signet.yaml").write_text(snippets["registries_d"])

    def copy(tag: str):
        return run_verifier(
            [
                skopeo,
                "--policy",
                str(tmp_path / "policy.json"),
                "--registries.d",
                str(registries_d),
                "copy",
                "--src-tls-verify=false",
                f"docker://{env.domain}/team/app:{tag}",
                f"dir:{tmp_path / tag}",
            ],
            env=offline_env(tmp_path / "home"),
        )

    signed, unsigned = copy("v1"), copy("v2")

    assert signed.returncode == 0, signed.stderr
    assert unsigned.returncode != 0
    assert "signature" in unsigned.stderr.lower()
