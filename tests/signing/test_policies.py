"""Signing policies: the name rule, one policy per namespace, key checks, domains, health."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from kms import services as kms_services
from kms.errors import KeyInUse, ServiceNotAuthorized
from kms.models import AuthorizedService, KeyState, KeyUsage
from signing import services
from signing.errors import InvalidPolicy, KeyNotSuitable, PolicyExists
from signing.models import Signature, SignatureStatus, SigningPolicy
from tests.factories import make_key
from tests.signing.conftest import CUSTOM_DOMAIN, DOMAIN, NAMESPACE, POLICY_NAME

pytestmark = pytest.mark.django_db


# --- the name rule ----------------------------------------------------------------------------

LENGTH = "Policy name must be 2 to 50 characters long (it is {})."
CHARACTERS = (
    "Policy name may contain only lowercase letters, digits and the separators . _ - / (found {})."
)

INVALID_NAMES = [
    ("empty", "", LENGTH.format(0)),
    ("one character", "a", LENGTH.format(1)),
    ("51 characters", "a" * 51, LENGTH.format(51)),
    ("uppercase", "Team", CHARACTERS.format("'T'")),
    ("space", "te am", CHARACTERS.format("' '")),
    ("several bad characters", "TEAM@x", CHARACTERS.format("'@' 'A' 'E' 'M' 'T'")),
    ("unicode letter", "équipe", CHARACTERS.format("'é'")),
    ("leading dash", "-team", "Policy name must not start with a separator ('-')."),
    ("leading slash", "/team", "Policy name must not start with a separator ('/')."),
    ("leading dot", ".team", "Policy name must not start with a separator ('.')."),
    ("trailing underscore", "team_", "Policy name must not end with a separator ('_')."),
    ("trailing slash", "team/", "Policy name must not end with a separator ('/')."),
    ("double underscore", "te__am", "Policy name must not contain consecutive separators ('__')."),
    ("dot dash", "te.-am", "Policy name must not contain consecutive separators ('.-')."),
    ("double slash", "te//am", "Policy name must not contain consecutive separators ('//')."),
]

VALID_NAMES = ["ab", "team-policy", "a.b_c-d/e", "v1.2", "0123", "a" * 50, "prod/web-signing"]


@pytest.mark.parametrize(
    ("name", "message"), [pytest.param(n, m, id=i) for i, n, m in INVALID_NAMES]
)
def test_it_rejects_a_policy_name_that_breaks_the_rule_saying_which_part(
    namespace, key, authorized, name, message
):
    with pytest.raises(InvalidPolicy) as excinfo:
        services.create_policy(namespace=namespace, name=name, key=key)

    error = excinfo.value
    assert (error.code, error.http_status, error.message) == ("InvalidPolicyName", 400, message)
    assert error.fields == {"name": [message]}
    assert error.as_dict() == {
        "code": "InvalidPolicyName",
        "message": message,
        "fields": {"name": [message]},
    }
    assert not SigningPolicy.objects.exists()


@pytest.mark.parametrize("name", VALID_NAMES)
def test_it_accepts_a_policy_name_that_follows_the_rule(namespace, key, authorized, name):
    outcome = services.create_policy(namespace=namespace, name=name, key=key)

    assert outcome.warnings == []
    stored = SigningPolicy.objects.get()
    assert stored == outcome.policy
    assert stored.name == name
    stored.full_clean()  # the model's own validator agrees


# --- one policy per namespace -------------------------------------------------------------------


def test_it_creates_a_policy_with_the_instance_default_domain_and_the_key_region(
    namespace, key, authorized
):
    outcome = services.create_policy(namespace=namespace, name=POLICY_NAME, key=str(key.key_id))

    policy = SigningPolicy.objects.get()
    assert outcome.policy == policy
    assert (outcome.warnings, outcome.resign_candidates) == ([], 0)
    assert (policy.namespace, policy.key, policy.name) == (namespace, key, POLICY_NAME)
    assert (policy.domain, policy.kms_region, policy.disabled) == (DOMAIN, key.region, False)


def test_a_namespace_gets_only_one_policy(policy, namespace, other_key):
    with pytest.raises(PolicyExists) as excinfo:
        services.create_policy(namespace=namespace, name="second-policy", key=other_key)

    error = excinfo.value
    assert (error.code, error.http_status) == ("PolicyExists", 409)
    assert f"Namespace {NAMESPACE} of instance signet already has a signing policy" in (
        error.message
    )
    assert error.details == {"namespace": NAMESPACE}
    assert list(SigningPolicy.objects.values_list("name", flat=True)) == [POLICY_NAME]


def test_the_database_itself_refuses_a_second_policy_for_a_namespace(policy, namespace, other_key):
    with pytest.raises(IntegrityError), transaction.atomic():
        SigningPolicy.objects.create(
            namespace=namespace,
            name="sneaky",
            key=other_key,
            kms_region=other_key.region,
            domain=DOMAIN,
        )

    assert SigningPolicy.objects.count() == 1


def test_another_namespace_of_the_instance_gets_its_own_policy(policy, instance, other_key):
    from registry import services as registry_services

    other = registry_services.create_namespace(instance=instance, name="other")

    outcome = services.create_policy(namespace=other, name=POLICY_NAME, key=other_key)

    assert outcome.policy.namespace == other
    assert SigningPolicy.objects.count() == 2


# --- key checks -----------------------------------------------------------------------------------


def test_it_rejects_an_ecc_key_because_images_are_signed_with_rsa(namespace, authorized):
    ecc = make_key("ecc-key", key_usage=KeyUsage.ECC)

    with pytest.raises(KeyNotSuitable) as excinfo:
        services.create_policy(namespace=namespace, name=POLICY_NAME, key=ecc)

    error = excinfo.value
    assert (error.code, error.http_status) == ("InvalidKeyUsage", 409)
    assert error.message == (
        f"Key ecc-key has usage {KeyUsage.ECC}; image signing needs a key with usage "
        f"{KeyUsage.RSA_2048} (asymmetric sign/verify, RSA 2048)."
    )
    assert not SigningPolicy.objects.exists()


def test_it_rejects_a_disabled_key(namespace, key, authorized):
    kms_services.disable_key(key_id=str(key.key_id))

    with pytest.raises(KeyNotSuitable) as excinfo:
        services.create_policy(namespace=namespace, name=POLICY_NAME, key=str(key.key_id))

    assert excinfo.value.code == "KeyDisabled"
    assert excinfo.value.message == "Key image-signing is disabled; enable it in the KMS first."
    assert not SigningPolicy.objects.exists()


def test_it_rejects_a_key_pending_deletion(namespace, key, authorized):
    kms_services.disable_key(key_id=str(key.key_id))
    kms_services.schedule_key_deletion(key_id=str(key.key_id), pending_window_in_days=7)

    with pytest.raises(KeyNotSuitable) as excinfo:
        services.create_policy(namespace=namespace, name=POLICY_NAME, key=str(key.key_id))

    assert excinfo.value.code == "KeyPendingDelete"
    assert excinfo.value.message == (
        "Key image-signing is pending deletion; cancel the deletion and enable it first."
    )
    assert not SigningPolicy.objects.exists()


def test_it_rejects_a_policy_while_the_signing_service_is_not_authorized(namespace, key):
    with pytest.raises(ServiceNotAuthorized) as excinfo:
        services.create_policy(namespace=namespace, name=POLICY_NAME, key=key)

    error = excinfo.value
    assert (error.code, error.http_status) == ("UnauthorizedOperation.ServiceNotAuthorized", 403)
    assert "is not authorized to use KMS keys" in error.message
    assert "An administrator must grant it" in error.message
    assert "Service authorizations > Add (service 'registry-signing')" in error.message
    assert 'POST /api/v1/kms/service-authorizations/ with {"service": "registry-signing"}' in (
        error.message
    )
    assert not SigningPolicy.objects.exists()


def test_a_revoked_authorization_counts_as_none(namespace, key, authorized):
    kms_services.revoke_service_authorization(service=AuthorizedService.REGISTRY_SIGNING)

    with pytest.raises(ServiceNotAuthorized):
        services.create_policy(namespace=namespace, name=POLICY_NAME, key=key)

    assert not SigningPolicy.objects.exists()


def test_a_key_in_another_region_is_accepted_with_a_warning(namespace, authorized):
    far = make_key("far-key", region="ap-singapore")

    outcome = services.create_policy(namespace=namespace, name=POLICY_NAME, key=far)

    assert outcome.warnings == [
        "Key far-key is in region ap-singapore and instance signet in ap-guangzhou; keeping "
        "them in the same region is recommended to avoid cross-region calls."
    ]
    policy = SigningPolicy.objects.get()
    assert (policy.key, policy.kms_region) == (far, "ap-singapore")


def test_it_rejects_a_kms_region_the_key_is_not_in(namespace, key, authorized):
    with pytest.raises(InvalidPolicy) as excinfo:
        services.create_policy(
            namespace=namespace, name=POLICY_NAME, key=key, kms_region="ap-beijing"
        )

    assert excinfo.value.code == "InvalidKmsRegion"
    assert excinfo.value.fields == {
        "kms_region": ["Key image-signing is in region ap-guangzhou, not ap-beijing."]
    }
    assert not SigningPolicy.objects.exists()


def test_it_rejects_an_unknown_key_id(namespace, authorized):
    missing = "00000000-0000-4000-8000-000000000000"

    with pytest.raises(InvalidPolicy) as excinfo:
        services.create_policy(namespace=namespace, name=POLICY_NAME, key=missing)

    assert (excinfo.value.code, excinfo.value.http_status) == ("KeyNotFound", 400)
    assert excinfo.value.fields == {"key": [f"No KMS key with id {missing}."]}
    assert not SigningPolicy.objects.exists()


def test_only_enabled_rsa_keys_are_offered(key, other_key):
    make_key("ecc-key", key_usage=KeyUsage.ECC)
    kms_services.disable_key(key_id=str(other_key.key_id))

    assert list(services.suitable_keys()) == [key]


# --- domains --------------------------------------------------------------------------------------


def test_the_domain_must_be_one_of_the_instance_domains(namespace, key, authorized):
    with pytest.raises(InvalidPolicy) as excinfo:
        services.create_policy(
            namespace=namespace, name=POLICY_NAME, key=key, domain="evil.example.com"
        )

    error = excinfo.value
    assert (error.code, error.http_status) == ("InvalidDomain", 400)
    assert error.fields == {
        "domain": [
            "Domain 'evil.example.com' is not a domain name of instance signet; choose one of "
            f"{DOMAIN}, {CUSTOM_DOMAIN}."
        ]
    }
    assert not SigningPolicy.objects.exists()


def test_a_custom_domain_of_the_instance_is_accepted(namespace, key, authorized):
    outcome = services.create_policy(
        namespace=namespace, name=POLICY_NAME, key=key, domain=CUSTOM_DOMAIN
    )

    assert SigningPolicy.objects.get().domain == CUSTOM_DOMAIN == outcome.policy.domain


def test_a_domain_of_another_instance_is_rejected(namespace, key, authorized, registry_server):
    from registry import services as registry_services

    registry_services.create_instance(
        name="elsewhere", backend_url=registry_server.url, default_domain="elsewhere.test"
    )

    with pytest.raises(InvalidPolicy) as excinfo:
        services.create_policy(
            namespace=namespace, name=POLICY_NAME, key=key, domain="elsewhere.test"
        )

    assert excinfo.value.code == "InvalidDomain"
    assert not SigningPolicy.objects.exists()


# --- the key behind a policy ---------------------------------------------------------------------


def test_a_key_used_by_a_policy_cannot_be_scheduled_for_deletion(policy, key):
    kms_services.disable_key(key_id=str(key.key_id))

    with pytest.raises(KeyInUse) as excinfo:
        kms_services.schedule_key_deletion(key_id=str(key.key_id), pending_window_in_days=7)

    error = excinfo.value
    assert (error.code, error.http_status) == ("ResourceInUse.KeyInUse", 409)
    assert error.message == (
        f"Key image-signing is used by signing policy {POLICY_NAME} (namespace {NAMESPACE} of "
        "signet); point the policy at another key or delete it before deleting the key."
    )
    key.refresh_from_db()
    assert (key.state, key.deletion_date) == (KeyState.DISABLED, None)


def test_a_key_can_be_scheduled_for_deletion_once_no_policy_uses_it(policy, key):
    services.delete_policy(policy=policy)
    kms_services.disable_key(key_id=str(key.key_id))

    kms_services.schedule_key_deletion(key_id=str(key.key_id), pending_window_in_days=7)

    key.refresh_from_db()
    assert key.state == KeyState.PENDING_DELETE


def test_policy_health_is_ok_while_the_key_is_enabled_and_the_service_authorized(policy):
    health = services.policy_health(policy)

    assert (health.ok, health.message) == (True, "Signing new pushes.")


def test_a_disabled_key_makes_the_policy_unhealthy(policy, key):
    kms_services.disable_key(key_id=str(key.key_id))
    policy.refresh_from_db()

    health = services.policy_health(policy)

    assert health.ok is False
    assert health.message == "Key image-signing is Disabled: new images are not signed."


def test_a_revoked_service_authorization_makes_the_policy_unhealthy(policy):
    kms_services.revoke_service_authorization(service=AuthorizedService.REGISTRY_SIGNING)

    health = services.policy_health(policy)

    assert health.ok is False
    assert "not authorized" in health.message


def test_a_disabled_policy_is_healthy_but_says_it_signs_nothing_new(namespace, key, authorized):
    policy = services.create_policy(
        namespace=namespace, name=POLICY_NAME, key=key, disabled=True
    ).policy

    health = services.policy_health(policy)

    assert (health.ok, health.message) == (
        True,
        "Disabled: new pushes are not signed automatically.",
    )
    assert SigningPolicy.objects.get().disabled is True


# --- updating -------------------------------------------------------------------------------------


@pytest.mark.registry_server
@pytest.mark.django_db(transaction=True)
def test_changing_the_key_reports_the_images_to_re_sign(policy, key, other_key, push_image_event):
    first = push_image_event(tag="v1", seed="one")
    second = push_image_event(tag="v2", seed="two")
    assert Signature.objects.filter(status=SignatureStatus.SIGNED).count() == 2

    outcome = services.update_policy(policy=policy, key=other_key)

    assert outcome.resign_candidates == 2
    assert outcome.warnings == []
    assert outcome.policy.key == other_key
    stored = SigningPolicy.objects.get()
    assert (stored.key, stored.kms_region) == (other_key, other_key.region)
    assert set(services.resign_candidates(stored).values_list("manifest__digest", flat=True)) == {
        first.digest,
        second.digest,
    }
    # Nothing was re-signed by the change itself.
    assert set(Signature.objects.values_list("key_id", flat=True)) == {key.key_id}


@pytest.mark.registry_server
@pytest.mark.django_db(transaction=True)
def test_an_update_that_keeps_the_key_reports_nothing_to_re_sign(policy, push_image_event):
    push_image_event(tag="v1")

    outcome = services.update_policy(policy=policy, name="renamed", disabled=True)

    assert outcome.resign_candidates == 0
    stored = SigningPolicy.objects.get()
    assert (stored.name, stored.disabled, stored.key_id) == ("renamed", True, policy.key_id)


def test_an_update_is_checked_like_a_create(policy):
    with pytest.raises(InvalidPolicy) as excinfo:
        services.update_policy(policy=policy, domain="nowhere.test")

    assert excinfo.value.code == "InvalidDomain"
    assert SigningPolicy.objects.get().domain == DOMAIN


def test_an_update_to_a_disabled_key_is_refused(policy, key, other_key):
    # The caller's Key object was loaded before the key was disabled: the stored state counts.
    kms_services.disable_key(key_id=str(other_key.key_id))
    assert other_key.state == KeyState.ENABLED

    with pytest.raises(KeyNotSuitable) as excinfo:
        services.update_policy(policy=policy, key=other_key)

    assert excinfo.value.code == "KeyDisabled"
    assert SigningPolicy.objects.get().key_id == key.key_id


def test_creating_with_a_key_object_loaded_before_it_was_disabled_is_refused(
    namespace, key, authorized
):
    kms_services.disable_key(key_id=str(key.key_id))

    with pytest.raises(KeyNotSuitable) as excinfo:
        services.create_policy(namespace=namespace, name=POLICY_NAME, key=key)

    assert excinfo.value.code == "KeyDisabled"
    assert not SigningPolicy.objects.exists()


@pytest.mark.parametrize("domain", ["registry", "signet-registry"])
def test_a_domain_verifiers_would_read_as_a_docker_hub_path_is_rejected(
    key, authorized, registry_server, domain
):
    # signature-format.md: a domain without '.' or ':' (and not localhost) is read as a
    # Docker Hub path, so nothing signed for it could ever verify.
    from registry import services as registry_services

    instance, _ = registry_services.create_instance(
        name="bare", backend_url=registry_server.url, default_domain=domain
    )
    namespace = registry_services.create_namespace(instance=instance, name=NAMESPACE)

    with pytest.raises(InvalidPolicy) as excinfo:
        services.create_policy(namespace=namespace, name=POLICY_NAME, key=key)

    assert excinfo.value.code == "InvalidDomain"
    assert "Docker Hub" in excinfo.value.fields["domain"][0]
    assert not SigningPolicy.objects.exists()


@pytest.mark.parametrize("domain", ["localhost", "localhost:5000", "registry:5000", "10.0.0.1"])
def test_a_domain_with_a_port_a_dot_or_localhost_is_accepted(
    key, authorized, registry_server, domain
):
    from registry import services as registry_services

    instance, _ = registry_services.create_instance(
        name="bare", backend_url=registry_server.url, default_domain=domain
    )
    namespace = registry_services.create_namespace(instance=instance, name=NAMESPACE)

    outcome = services.create_policy(namespace=namespace, name=POLICY_NAME, key=key)

    assert SigningPolicy.objects.get().domain == domain == outcome.policy.domain


def test_a_policy_whose_key_was_disabled_can_still_be_switched_off_and_renamed(policy, key):
    # When its key is disabled, an administrator must be able to turn the policy off.
    kms_services.disable_key(key_id=str(key.key_id))
    policy = SigningPolicy.objects.get()  # as the admin or the API loads it

    outcome = services.update_policy(policy=policy, disabled=True, name="paused")

    stored = SigningPolicy.objects.get()
    assert (stored.disabled, stored.name, stored.key_id) == (True, "paused", key.key_id)
    assert outcome.policy.disabled is True
    assert services.policy_health(stored).ok is False


def test_a_policy_can_be_switched_off_while_the_service_authorization_is_revoked(policy):
    kms_services.revoke_service_authorization(service=AuthorizedService.REGISTRY_SIGNING)

    services.update_policy(policy=policy, disabled=True)

    assert SigningPolicy.objects.get().disabled is True
