"""The signing admin: policies, signatures, and the signing parts of the tag and namespace pages.

Everything that signs or verifies runs against a real docker-registry (``registry_server``)
and the real KMS; tags are imported from the registry with ``sync_instance`` (which
signs nothing), so each test decides what gets signed.
"""

from __future__ import annotations

import itertools
import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import Role
from kms import services as kms_services
from kms.models import AuthorizedService, KeyUsage
from registry import services as registry_services
from registry.models import Instance, Manifest, Namespace, Repository, Tag
from signing import artifacts, services
from signing.admin.policy import row_health
from signing.models import Signature, SignatureStatus, SigningPolicy
from signing.payload import signature_tag
from tests.accounts.support import grant
from tests.factories import make_key, make_user
from tests.support.oci import push_image

pytestmark = pytest.mark.django_db

SERVICE = AuthorizedService.REGISTRY_SIGNING
DOMAIN = "registry.example.com"
POLICIES = reverse("admin:signing_signingpolicy_changelist")
POLICY_ADD = reverse("admin:signing_signingpolicy_add")
SIGNATURES = reverse("admin:signing_signature_changelist")
TAGS = reverse("admin:registry_tag_changelist")
NAMESPACES = reverse("admin:registry_namespace_changelist")
_seeds = itertools.count(1)


# --- fixtures and helpers ----------------------------------------------------------------


@pytest.fixture
def authorized(superuser):
    return kms_services.grant_service_authorization(service=SERVICE, granted_by=superuser)


@pytest.fixture
def key(authorized):
    return make_key("signer")


@pytest.fixture
def instance(registry_server) -> Instance:
    created, _token = registry_services.create_instance(
        name="prod",
        backend_url=registry_server.url,
        default_domain=DOMAIN,
        custom_domains=["mirror.example.com"],
    )
    return created


@pytest.fixture
def offline_instance(db) -> Instance:
    """An instance whose registry is never contacted (page and query tests)."""
    created, _token = registry_services.create_instance(
        name="offline",
        backend_url="http://127.0.0.1:9",
        default_domain=f"offline.{DOMAIN}",
    )
    return created


@pytest.fixture
def namespace(instance) -> Namespace:
    return registry_services.create_namespace(instance=instance, name="team")


@pytest.fixture
def policy(namespace, key, superuser) -> SigningPolicy:
    return services.create_policy(
        namespace=namespace, name="team-policy", key=key, created_by=superuser
    ).policy


def push_and_sync(instance: Instance, repository: str, tag: str) -> Tag:
    """Push a fresh image to the real registry and import it (nothing gets signed)."""
    client = instance.registry_client()
    push_image(client, repository, tag, seed=f"seed-{next(_seeds)}")
    result = registry_services.sync_instance(instance=instance)
    assert not result.errors
    return Tag.objects.select_related("manifest__repository").get(
        repository__name=repository, name=tag
    )


def record_tag(namespace: Namespace, repository: str, tag: str) -> Tag:
    """A tag recorded in the database only (for pages that never reach the registry)."""
    repo, _ = Repository.objects.get_or_create(namespace=namespace, name=repository)
    now = timezone.now()
    manifest = Manifest.objects.create(
        repository=repo,
        digest="sha256:" + f"{next(_seeds):064x}",
        media_type="application/vnd.oci.image.manifest.v1+json",
        size=100,
        pushed_at=now,
    )
    return Tag.objects.create(
        repository=repo, name=tag, manifest=manifest, pushed_at=now, updated_at=now
    )


def add_signature(policy: SigningPolicy, tag: Tag, status: str) -> Signature:
    fields: dict = {"status": status, "trigger": "push"}
    if status == SignatureStatus.SIGNED:
        fields.update(
            signed_at=timezone.now(),
            signature_value="c2ln",
            key_id=policy.key_id,
            key_fingerprint=policy.key.public_key_fingerprint,
        )
    if status == SignatureStatus.FAILED:
        fields.update(failure_code="KmsUnavailable", failure_reason="The KMS did not answer.")
    return Signature.objects.create(policy=policy, manifest=tag.manifest, **fields)


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def sig_head(instance: Instance, tag: Tag):
    return instance.registry_client().head_manifest(
        tag.repository.name, signature_tag(tag.manifest.digest)
    )


def policy_form(namespace: Namespace | None, key, **overrides) -> dict:
    data = {"name": "team-policy", "key": str(key.pk), "domain": "", "disabled": ""}
    if namespace is not None:
        data["namespace"] = str(namespace.pk)
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def change_url(policy: SigningPolicy) -> str:
    return reverse("admin:signing_signingpolicy_change", args=[policy.pk])


def sign_url(tag: Tag) -> str:
    return reverse("admin:registry_tag_sign", args=[tag.pk])


def run_action(client: Client, url: str, action: str, objects, **extra):
    data = {"action": action, "_selected_action": [str(o.pk) for o in objects], "index": 0}
    data.update(extra)
    return client.post(url, data, follow=True)


# --- the policy list -------------------------------------------------------------------


def _policies(instance: Instance, count: int, start: int = 0) -> list[SigningPolicy]:
    created = []
    for number in range(start, start + count):
        namespace = registry_services.create_namespace(instance=instance, name=f"ns{number:02d}")
        key = make_key(f"key-{number}")
        policy = services.create_policy(
            namespace=namespace, name=f"policy-{number}", key=key, disabled=number % 3 == 0
        ).policy
        tag = record_tag(namespace, f"ns{number:02d}/app", "v1")
        add_signature(policy, tag, [SignatureStatus.SIGNED, SignatureStatus.FAILED][number % 2])
        if number % 4 == 1:
            kms_services.disable_key(key_id=str(key.pk))
        created.append(policy)
    return created


def test_the_policy_list_costs_the_same_queries_for_2_and_20_policies(
    admin_client, offline_instance, authorized
):
    _policies(offline_instance, 2)
    with CaptureQueriesContext(connection) as two:
        response = admin_client.get(POLICIES)
    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == 2

    _policies(offline_instance, 18, start=2)
    with CaptureQueriesContext(connection) as twenty:
        response = admin_client.get(POLICIES)
    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == 20
    assert len(twenty) == len(two)


def test_the_policy_list_shows_counts_health_and_filters_by_health(
    admin_client, offline_instance, authorized
):
    healthy, broken = _policies(offline_instance, 2)  # policy-1's key is disabled
    response = admin_client.get(POLICIES)
    page = response.content.decode()
    assert "error: Key key-1 is Disabled: new images are not signed." in page
    assert "var(--error-fg" in page
    assert f'?policy={healthy.pk}&amp;status__exact=signed">1</a>' in page
    assert f'?policy={broken.pk}&amp;status__exact=failed">1</a>' in page

    errors = admin_client.get(POLICIES, {"health": "error"}).context["cl"].result_list
    assert [p.pk for p in errors] == [broken.pk]
    ok = admin_client.get(POLICIES, {"health": "ok"}).context["cl"].result_list
    assert [p.pk for p in ok] == [healthy.pk]


def test_list_health_matches_policy_health_in_every_state(offline_instance, authorized):
    policies = _policies(offline_instance, 4)  # disabled flags and a disabled key
    for revoked in (False, True):
        if revoked:
            kms_services.revoke_service_authorization(service=SERVICE)
        authorized = not revoked
        for policy in SigningPolicy.objects.select_related("key").filter(
            pk__in=[p.pk for p in policies]
        ):
            assert row_health(policy, authorized=authorized) == services.policy_health(policy)


# --- the add/change form -------------------------------------------------------------------


def test_the_key_picker_offers_only_enabled_rsa_2048_keys(
    admin_client, offline_instance, authorized
):
    suitable = make_key("good-key")
    ecc = make_key("ecc-key", key_usage=KeyUsage.ECC)
    disabled = make_key("off-key")
    kms_services.disable_key(key_id=str(disabled.pk))

    response = admin_client.get(POLICY_ADD)

    choices = dict(response.context["adminform"].form.fields["key"].widget.choices)
    assert str(suitable.pk) in choices
    assert "good-key" in choices[str(suitable.pk)]
    assert "ap-guangzhou" in choices[str(suitable.pk)]
    assert str(ecc.pk) not in choices
    assert str(disabled.pk) not in choices
    page = response.content.decode()
    assert "ecc-key" not in page and "off-key" not in page


def test_an_invalid_name_shows_the_rule_message(admin_client, namespace, key):
    response = admin_client.post(POLICY_ADD, policy_form(namespace, key, name="team--policy"))

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["name"] == [
        "Policy name must not contain consecutive separators ('--')."
    ]
    assert not SigningPolicy.objects.exists()


def test_it_creates_a_policy_through_the_service(admin_client, namespace, key, superuser):
    response = admin_client.post(
        POLICY_ADD, policy_form(namespace, key, domain="mirror.example.com"), follow=True
    )

    assert response.status_code == 200
    policy = SigningPolicy.objects.get()
    assert (policy.name, policy.key_id, policy.domain) == (
        "team-policy",
        key.pk,
        "mirror.example.com",
    )
    assert policy.kms_region == key.region
    assert policy.created_by == superuser
    assert not any(m.level_tag == "warning" for m in response.context["messages"])


def test_a_blank_domain_means_the_instance_default(admin_client, namespace, key):
    admin_client.post(POLICY_ADD, policy_form(namespace, key, domain=""))

    assert SigningPolicy.objects.get().domain == DOMAIN


def test_a_domain_of_another_instance_is_a_domain_error(admin_client, namespace, key):
    registry_services.create_instance(
        name="other", backend_url="http://127.0.0.1:9", default_domain="other.example.com"
    )
    response = admin_client.post(
        POLICY_ADD, policy_form(namespace, key, domain="other.example.com")
    )

    errors = response.context["adminform"].form.errors
    assert "is not a domain name of instance prod" in errors["domain"][0]
    assert not SigningPolicy.objects.exists()


def test_a_second_policy_for_the_namespace_is_a_namespace_error(admin_client, policy, key):
    response = admin_client.post(
        POLICY_ADD, policy_form(policy.namespace, key, name="another-policy")
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "only one policy per namespace is allowed" in errors["namespace"][0]
    assert list(SigningPolicy.objects.values_list("name", flat=True)) == ["team-policy"]


def test_a_disabled_key_posted_by_hand_gets_the_service_message(admin_client, namespace, key):
    kms_services.disable_key(key_id=str(key.pk))

    response = admin_client.post(POLICY_ADD, policy_form(namespace, key))

    assert response.context["adminform"].form.errors["key"] == [
        "Key signer is disabled; enable it in the KMS first."
    ]
    assert not SigningPolicy.objects.exists()


def test_without_the_service_authorization_the_key_field_says_how_to_grant_it(
    admin_client, namespace, key
):
    kms_services.revoke_service_authorization(service=SERVICE)

    response = admin_client.post(POLICY_ADD, policy_form(namespace, key))

    (message,) = response.context["adminform"].form.errors["key"]
    assert "is not authorized to use KMS keys" in message
    assert "Service authorizations" in message
    assert not SigningPolicy.objects.exists()


def test_a_key_in_another_region_saves_with_a_visible_warning(admin_client, namespace, authorized):
    far_key = make_key("far-key", region="ap-singapore")
    add_page = admin_client.get(POLICY_ADD).content.decode()
    # Said once, when the regions differ: not up front on every add page.
    assert "same region" not in add_page

    response = admin_client.post(POLICY_ADD, policy_form(namespace, far_key), follow=True)

    policy = SigningPolicy.objects.get()
    assert policy.kms_region == "ap-singapore"
    warnings = [str(m) for m in response.context["messages"] if m.level_tag == "warning"]
    assert warnings == [
        "Key far-key is in region ap-singapore and instance prod in ap-guangzhou; keeping "
        "them in the same region is recommended to avoid cross-region calls."
    ]
    change_page = admin_client.get(change_url(policy)).content.decode()
    assert change_page.count("same region") == 1
    assert "keeping them in the same region is recommended" in change_page


def test_the_change_page_shows_the_public_key_policy_json_and_cosign_command(
    admin_client, policy, key
):
    response = admin_client.get(change_url(policy))

    page = response.content.decode()
    assert response.status_code == 200
    assert key.public_key_pem.strip().splitlines()[1] in page
    assert "-----BEGIN PUBLIC KEY-----" in page
    assert "PRIVATE" not in page
    assert reverse("admin:kms_key_public_key_pem", args=[key.pk]) in page
    assert "&quot;sigstoreSigned&quot;" in page
    assert f"&quot;{DOMAIN}/team&quot;" in page
    assert "&quot;matchRepository&quot;" in page
    assert "use-sigstore-attachments: true" in page
    assert (
        f"cosign verify --key signer.pem --insecure-ignore-tlog {DOMAIN}/team/&lt;repository"
        "&gt;:&lt;tag&gt;" in page
    )
    pem = admin_client.get(reverse("admin:kms_key_public_key_pem", args=[key.pk]))
    assert pem.content.decode() == key.public_key_pem


def test_changing_the_key_offers_a_resign_that_resigns_with_the_new_key(
    admin_client, instance, policy, authorized
):
    tag = push_and_sync(instance, "team/app", "v1")
    services.request_signing(manifests=[tag.manifest])
    old_key = policy.key
    new_key = make_key("new-signer")

    response = admin_client.post(
        change_url(policy), policy_form(None, new_key, domain=DOMAIN), follow=True
    )

    policy.refresh_from_db()
    assert policy.key_id == new_key.pk
    resign_url = reverse("admin:signing_signingpolicy_resign", args=[policy.pk])
    assert any(
        "Re-sign 1 images with the new key" in m and resign_url in m for m in messages_of(response)
    )
    signature = Signature.objects.get()
    assert signature.key_id == old_key.pk  # still valid until re-signed
    change_page = admin_client.get(change_url(policy)).content.decode()
    assert "Re-sign 1 images with the new key" in change_page
    assert "Re-sign 1 images with the new key" in admin_client.get(resign_url).content.decode()

    response = admin_client.post(resign_url, follow=True)

    signature.refresh_from_db()
    assert signature.status == SignatureStatus.SIGNED
    assert signature.key_id == new_key.pk
    assert signature.trigger == "resign"
    # Issue 12: the re-sign answers at once with its progress page (the workers sign).
    assert response.redirect_chain[-1][0].endswith("/progress/")
    assert any("1 image(s) being signed in the background" in m for m in messages_of(response))
    layers = artifacts.read_layers(instance.registry_client(), "team/app", tag.manifest.digest)
    assert [layer.key_fingerprint for layer in layers] == [new_key.public_key_fingerprint]


def test_a_view_only_user_sees_no_resign_or_retry_buttons(client, offline_instance, authorized):
    (policy,) = _policies(offline_instance, 1, start=1)  # one failed signature
    viewer = make_user(perms=["signing.view_signingpolicy"], is_staff=True)
    grant(viewer, offline_instance, role=Role.READER)
    client.force_login(viewer)

    response = client.get(change_url(policy))

    assert response.status_code == 200
    page = response.content.decode()
    assert "policy-1" in page
    assert "failed signatures" not in page
    response = client.post(reverse("admin:signing_signingpolicy_retry_failed", args=[policy.pk]))
    assert response.status_code == 403


# --- deleting --------------------------------------------------------------------------------


def _signed_policy(instance, policy) -> Tag:
    tag = push_and_sync(instance, "team/app", "v1")
    result = services.request_signing(manifests=[tag.manifest])
    assert result.outcome.signed == 1
    assert sig_head(instance, tag) is not None
    return tag


def test_the_delete_page_warns_with_the_signature_count(admin_client, offline_instance, authorized):
    (policy,) = _policies(offline_instance, 1, start=1)
    record = record_tag(policy.namespace, "ns01/app", "v2")
    add_signature(policy, record, SignatureStatus.PENDING)

    page = admin_client.get(
        reverse("admin:signing_signingpolicy_delete", args=[policy.pk])
    ).content.decode()

    assert (
        "Deleting policy policy-1 removes 2 signature(s) of namespace ns01 (instance "
        "offline) and their .sig artifacts in the registry; verification of those images "
        "will fail." in page
    )
    assert SigningPolicy.objects.filter(pk=policy.pk).exists()


def test_the_bulk_delete_page_warns_for_each_policy(admin_client, offline_instance, authorized):
    policies = _policies(offline_instance, 2)

    response = run_action(admin_client, POLICIES, "delete_selected", policies)

    page = response.content.decode()
    assert "Deleting policy policy-0 removes 1 signature(s) of namespace ns00" in page
    assert "Deleting policy policy-1 removes 1 signature(s) of namespace ns01" in page
    assert "verification of those images will fail" in page
    assert SigningPolicy.objects.count() == 2


def test_deleting_a_policy_removes_its_signatures_and_sig_artifacts(
    admin_client, instance, policy, django_capture_on_commit_callbacks
):
    tag = _signed_policy(instance, policy)

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("admin:signing_signingpolicy_delete", args=[policy.pk]),
            {"post": "yes"},
            follow=True,
        )

    assert response.status_code == 200
    assert not SigningPolicy.objects.exists()
    assert not Signature.objects.exists()
    assert sig_head(instance, tag) is None
    assert Tag.objects.filter(pk=tag.pk).exists()  # the image itself stays


def test_bulk_deleting_policies_removes_their_signatures_and_sig_artifacts(
    admin_client, instance, policy, key, django_capture_on_commit_callbacks
):
    tag = _signed_policy(instance, policy)
    other_ns = registry_services.create_namespace(instance=instance, name="other")
    other = services.create_policy(namespace=other_ns, name="other-policy", key=key).policy
    other_tag = push_and_sync(instance, "other/app", "v1")
    services.request_signing(manifests=[other_tag.manifest])
    assert sig_head(instance, other_tag) is not None

    with django_capture_on_commit_callbacks(execute=True):
        response = run_action(
            admin_client, POLICIES, "delete_selected", [policy, other], post="yes"
        )

    assert "Successfully deleted 2 signing policies." in messages_of(response)
    assert not SigningPolicy.objects.exists()
    assert not Signature.objects.exists()
    assert sig_head(instance, tag) is None
    assert sig_head(instance, other_tag) is None


# --- the tag list: signature column, Sign button, bulk sign and verify -------------------


def test_the_tag_list_costs_the_same_queries_for_2_and_20_tags(admin_client, offline_instance, key):
    namespace = registry_services.create_namespace(instance=offline_instance, name="team")
    policy = services.create_policy(namespace=namespace, name="team-policy", key=key).policy
    bare = registry_services.create_namespace(instance=offline_instance, name="bare")
    statuses = [SignatureStatus.SIGNED, SignatureStatus.PENDING, SignatureStatus.FAILED, None]

    def add_tags(start: int, count: int) -> None:
        for number in range(start, start + count):
            if number % 5 == 4:
                record_tag(bare, "bare/app", f"v{number}")
                continue
            tag = record_tag(namespace, f"team/app{number % 3}", f"v{number}")
            if statuses[number % 4]:
                add_signature(policy, tag, statuses[number % 4])

    add_tags(0, 2)
    with CaptureQueriesContext(connection) as two:
        response = admin_client.get(TAGS)
    assert len(response.context["cl"].result_list) == 2

    add_tags(2, 18)
    with CaptureQueriesContext(connection) as twenty:
        response = admin_client.get(TAGS)
    assert len(response.context["cl"].result_list) == 20
    assert len(twenty) == len(two)


def test_the_tag_list_shows_each_signature_state_and_filters_by_it(
    admin_client, offline_instance, key
):
    namespace = registry_services.create_namespace(instance=offline_instance, name="team")
    policy = services.create_policy(namespace=namespace, name="team-policy", key=key).policy
    bare = registry_services.create_namespace(instance=offline_instance, name="bare")
    signed = record_tag(namespace, "team/app", "signed")
    add_signature(policy, signed, SignatureStatus.SIGNED)
    pending = record_tag(namespace, "team/app", "pending")
    add_signature(policy, pending, SignatureStatus.PENDING)
    failed = record_tag(namespace, "team/app", "failed")
    add_signature(policy, failed, SignatureStatus.FAILED)
    unsigned = record_tag(namespace, "team/app", "unsigned")
    no_policy = record_tag(bare, "bare/app", "v1")

    page = admin_client.get(TAGS).content.decode()

    assert 'class="signature-status signature-signed"' in page
    assert '<span class="signature-key" title="Key fingerprint ' in page
    assert ">pending<" in page
    assert 'title="KmsUnavailable: The KMS did not answer.">failed<' in page
    assert ">unsigned<" in page
    assert ">no policy<" in page
    expected = {
        "signed": signed,
        "pending": pending,
        "failed": failed,
        "unsigned": unsigned,
        "none": no_policy,
    }
    for value, tag in expected.items():
        rows = admin_client.get(TAGS, {"signature": value}).context["cl"].result_list
        assert [row.pk for row in rows] == [tag.pk], value


def test_the_sign_button_signs_the_tag_in_the_registry(admin_client, instance, policy, superuser):
    tag = push_and_sync(instance, "team/app", "v1")
    page = admin_client.get(TAGS).content.decode()
    assert f'formaction="{sign_url(tag)}"' in page
    assert sig_head(instance, tag) is None

    response = admin_client.post(sign_url(tag), follow=True)

    assert response.redirect_chain[-1][0] == TAGS
    assert messages_of(response) == ["Tag team/app:v1: signed (1 manifest(s))."]
    signature = Signature.objects.get(manifest=tag.manifest)
    assert signature.status == SignatureStatus.SIGNED
    assert signature.trigger == "manual"
    assert signature.triggered_by == superuser
    assert signature.docker_reference == f"{DOMAIN}/team/app"
    head = sig_head(instance, tag)
    assert head is not None and head.digest == signature.sig_manifest_digest
    assert ">signed ✓</span>" in admin_client.get(TAGS).content.decode()


def test_the_sign_button_submits_the_changelist_form_with_its_csrf_token(
    instance, policy, superuser
):
    """The button sits in the changelist form (forms cannot nest) and posts it elsewhere."""
    tag = push_and_sync(instance, "team/app", "v1")
    client = Client(enforce_csrf_checks=True)
    client.force_login(superuser)
    page = client.get(TAGS).content.decode()

    form_start = page.index('<form id="changelist-form"')
    button = page.index(f'formaction="{sign_url(tag)}"')
    form_end = page.index("</form>", form_start)
    assert form_start < button < form_end
    assert "<form" not in page[form_start + 1 : form_end]
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page[form_start:])
    assert token is not None

    refused = client.post(sign_url(tag))
    assert refused.status_code == 403
    assert not Signature.objects.exists()
    response = client.post(
        sign_url(tag), {"csrfmiddlewaretoken": token.group(1), "action": ""}, follow=True
    )
    assert messages_of(response) == ["Tag team/app:v1: signed (1 manifest(s))."]
    assert Signature.objects.get().status == SignatureStatus.SIGNED


def test_the_tag_page_shows_its_signature(admin_client, instance, policy):
    tag = push_and_sync(instance, "team/app", "v1")
    url = reverse("admin:registry_tag_change", args=[tag.pk])
    assert ">unsigned<" in admin_client.get(url).content.decode()

    services.request_signing(manifests=[tag.manifest])

    assert ">signed ✓</span>" in admin_client.get(url).content.decode()


def test_the_sign_button_on_a_signed_tag_says_already_signed(admin_client, instance, policy):
    tag = push_and_sync(instance, "team/app", "v1")
    admin_client.post(sign_url(tag), follow=True)
    before = Signature.objects.get().sig_manifest_digest

    response = admin_client.post(sign_url(tag), follow=True)

    assert messages_of(response) == ["Tag team/app:v1: already signed."]
    assert Signature.objects.get().sig_manifest_digest == before


def test_the_sign_button_without_a_policy_says_so(admin_client, instance, key):
    registry_services.create_namespace(instance=instance, name="bare")
    tag = push_and_sync(instance, "bare/app", "v1")

    response = admin_client.post(sign_url(tag), follow=True)

    (message,) = messages_of(response)
    assert message.startswith("Tag bare/app:v1: no policy: Namespace bare has no signing policy")
    assert not Signature.objects.exists()


def test_the_sign_button_reports_a_failure_with_its_reason(admin_client, instance, policy):
    tag = push_and_sync(instance, "team/app", "v1")
    kms_services.revoke_service_authorization(service=SERVICE)

    response = admin_client.post(sign_url(tag), follow=True)

    (message,) = messages_of(response)
    assert message.startswith("Tag team/app:v1: failed: team/app@sha256:")
    assert "not authorized to use KMS keys" in message
    signature = Signature.objects.get()
    assert signature.status == SignatureStatus.FAILED
    assert signature.failure_code.endswith("ServiceNotAuthorized")
    assert sig_head(instance, tag) is None


def test_the_sign_url_opened_directly_goes_to_the_tag_page_and_signs_nothing(
    admin_client, offline_instance
):
    namespace = registry_services.create_namespace(instance=offline_instance, name="team")
    tag = record_tag(namespace, "team/app", "v1")

    response = admin_client.get(sign_url(tag), follow=True)

    tag_page = reverse("admin:registry_tag_change", args=[tag.pk])
    assert response.redirect_chain == [(tag_page, 302)]
    assert messages_of(response) == [
        "Tag team/app:v1: nothing signed: use the Sign button on this page to sign it."
    ]
    assert 'class="button sign-button"' in response.content.decode()
    assert not Signature.objects.exists()


def test_sign_selected_signs_every_selected_tag(admin_client, instance, policy):
    first = push_and_sync(instance, "team/app", "v1")
    second = push_and_sync(instance, "team/web", "v2")
    left_out = push_and_sync(instance, "team/web", "v3")

    response = run_action(admin_client, TAGS, "sign_selected", [first, second])

    # Issue 12: the action answers at once (the workers sign) and shows its progress.
    assert response.redirect_chain[-1][0].endswith("/progress/")
    assert messages_of(response) == [
        "2 tag(s) selected. Images: 2 image(s) being signed in the background."
    ]
    signed = Signature.objects.filter(status=SignatureStatus.SIGNED)
    assert set(signed.values_list("manifest_id", flat=True)) == {
        first.manifest_id,
        second.manifest_id,
    }
    assert sig_head(instance, first) is not None
    assert sig_head(instance, second) is not None
    assert sig_head(instance, left_out) is None


def test_verify_selected_reports_each_tag(admin_client, instance, policy):
    signed = push_and_sync(instance, "team/app", "v1")
    unsigned = push_and_sync(instance, "team/app", "v2")
    services.request_signing(manifests=[signed.manifest])

    response = run_action(admin_client, TAGS, "verify_selected", [signed, unsigned])

    found = messages_of(response)
    assert found[0].startswith(f"Tag team/app:v1: verified ({signed.manifest.digest}).")
    assert "verifies with key signer" in found[0]
    assert found[1] == (
        f"Tag team/app:v2: not verified. No signature exists for "
        f"team/app@{unsigned.manifest.digest}."
    )
    levels = [m.level_tag for m in response.context["messages"]]
    assert levels == ["success", "error"]


def test_verify_selected_fails_after_the_policy_is_deleted(
    admin_client, instance, policy, key, django_capture_on_commit_callbacks
):
    tag = _signed_policy(instance, policy)
    with django_capture_on_commit_callbacks(execute=True):
        services.delete_policy(policy=policy)
    # A new policy with the same key: the old signature is gone, so nothing verifies.
    services.create_policy(namespace=policy.namespace, name="again", key=key)

    response = run_action(admin_client, TAGS, "verify_selected", [tag])

    (message,) = messages_of(response)
    assert message.startswith("Tag team/app:v1: not verified. No signature exists")


def test_staff_without_sign_images_sees_no_sign_button_and_cannot_sign(
    client, offline_instance, key
):
    namespace = registry_services.create_namespace(instance=offline_instance, name="team")
    services.create_policy(namespace=namespace, name="team-policy", key=key)
    tag = record_tag(namespace, "team/app", "v1")
    viewer = make_user(perms=["registry.view_tag", "signing.view_signature"], is_staff=True)
    client.force_login(viewer)

    response = client.get(TAGS)

    assert response.status_code == 200
    page = response.content.decode()
    assert "unsigned" in page  # the signature column is there
    assert sign_url(tag) not in page
    assert ">Sign<" not in page
    actions = dict(response.context["action_form"].fields["action"].choices)
    assert "sign_selected" not in actions
    assert "verify_selected" in actions
    assert client.post(sign_url(tag)).status_code == 403
    run_action(client, TAGS, "sign_selected", [tag])
    assert not Signature.objects.exists()
    signatures_page = client.get(SIGNATURES)
    assert signatures_page.status_code == 200
    assert "retry_selected" not in signatures_page.content.decode()


def test_a_signer_without_superuser_can_use_the_sign_button(client, instance, policy):
    tag = push_and_sync(instance, "team/app", "v1")
    signer = make_user(perms=["registry.view_tag", "signing.sign_images"], is_staff=True)
    grant(signer, instance)  # an operator of the instance
    client.force_login(signer)

    assert f'formaction="{sign_url(tag)}"' in client.get(TAGS).content.decode()
    response = client.post(sign_url(tag), follow=True)

    assert messages_of(response) == ["Tag team/app:v1: signed (1 manifest(s))."]
    assert Signature.objects.get().triggered_by == signer


# --- signatures: the record list and retries -------------------------------------------------


def test_the_signature_list_shows_records_and_retry_signs_failed_ones(
    admin_client, instance, policy, superuser
):
    tag = push_and_sync(instance, "team/app", "v1")
    kms_services.revoke_service_authorization(service=SERVICE)
    services.request_signing(manifests=[tag.manifest], actor=superuser)
    failed = Signature.objects.get()
    assert failed.status == SignatureStatus.FAILED

    page = admin_client.get(SIGNATURES).content.decode()
    assert "ServiceNotAuthorized: The Registry image-signing service is not authorized" in page
    assert ">team/app:v1</a>" in page
    assert admin_client.get(SIGNATURES, {"status__exact": "failed"}).context["cl"].result_count == 1

    kms_services.grant_service_authorization(service=SERVICE, granted_by=superuser)
    response = run_action(admin_client, SIGNATURES, "retry_selected", [failed])

    assert messages_of(response) == ["Images: 1 signed."]
    failed.refresh_from_db()
    assert failed.status == SignatureStatus.SIGNED
    assert failed.attempts == 2
    assert sig_head(instance, tag) is not None


def test_the_signature_detail_page_shows_the_payload_and_cannot_be_edited(
    admin_client, instance, policy
):
    tag = push_and_sync(instance, "team/app", "v1")
    services.request_signing(manifests=[tag.manifest])
    signature = Signature.objects.get()

    url = reverse("admin:signing_signature_change", args=[signature.pk])
    response = admin_client.get(url)

    page = response.content.decode()
    assert "cosign container image signature" in page
    assert f"{DOMAIN}/team/app" in page
    assert 'name="_save"' not in page
    before = Signature.objects.values().get()
    admin_client.post(url, {"status": "failed"})
    assert Signature.objects.values().get() == before
    assert admin_client.get(reverse("admin:signing_signature_add")).status_code == 403


def test_retry_failed_on_a_policy_signs_its_failed_rows(admin_client, instance, policy, superuser):
    tag = push_and_sync(instance, "team/app", "v1")
    kms_services.revoke_service_authorization(service=SERVICE)
    services.request_signing(manifests=[tag.manifest])
    kms_services.grant_service_authorization(service=SERVICE, granted_by=superuser)
    page = admin_client.get(change_url(policy)).content.decode()
    assert "Retry 1 failed signatures" in page

    response = admin_client.post(
        reverse("admin:signing_signingpolicy_retry_failed", args=[policy.pk]), follow=True
    )

    assert response.redirect_chain[-1][0].endswith("/progress/")  # issue 12: answers at once
    assert "Policy team-policy: retry: Images: 1 image(s) being signed in the background." in (
        messages_of(response)
    )
    assert Signature.objects.get().status == SignatureStatus.SIGNED


def test_the_retry_failed_action_signs_failed_rows(admin_client, instance, policy, superuser):
    tag = push_and_sync(instance, "team/app", "v1")
    kms_services.revoke_service_authorization(service=SERVICE)
    services.request_signing(manifests=[tag.manifest])
    kms_services.grant_service_authorization(service=SERVICE, granted_by=superuser)

    response = run_action(admin_client, POLICIES, "retry_failed_selected", [policy])

    assert response.redirect_chain[-1][0].endswith("/progress/")  # issue 12: answers at once
    assert "Policy team-policy: retry: Images: 1 image(s) being signed in the background." in (
        messages_of(response)
    )
    assert Signature.objects.get().status == SignatureStatus.SIGNED
    assert sig_head(instance, tag) is not None


def test_the_resign_action_resigns_with_the_current_key(admin_client, instance, policy):
    tag = push_and_sync(instance, "team/app", "v1")
    services.request_signing(manifests=[tag.manifest])
    new_key = make_key("rotated")
    services.update_policy(policy=policy, key=new_key)

    response = run_action(admin_client, POLICIES, "resign_selected", [policy])

    assert response.redirect_chain[-1][0].endswith("/progress/")  # issue 12: answers at once
    assert messages_of(response) == [
        "Policy team-policy: re-sign with key rotated: Images: 1 image(s) being signed in "
        "the background."
    ]
    assert Signature.objects.get().key_id == new_key.pk
    response = run_action(admin_client, POLICIES, "resign_selected", [policy])
    assert messages_of(response) == [
        "Policy team-policy: every signature is already made with key rotated; nothing to re-sign."
    ]


# --- namespaces ---------------------------------------------------------------------------


def test_the_namespace_list_shows_and_filters_the_policy_state(admin_client, offline_instance, key):
    enabled_ns = registry_services.create_namespace(instance=offline_instance, name="on")
    disabled_ns = registry_services.create_namespace(instance=offline_instance, name="off")
    bare = registry_services.create_namespace(instance=offline_instance, name="bare")
    services.create_policy(namespace=enabled_ns, name="on-policy", key=key)
    services.create_policy(namespace=disabled_ns, name="off-policy", key=key, disabled=True)

    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(NAMESPACES)
    page = response.content.decode()
    assert response.status_code == 200
    assert ">enabled</a>" in page and ">disabled</a>" in page and ">none<" in page
    for value, namespace in {"none": bare, "enabled": enabled_ns, "disabled": disabled_ns}.items():
        rows = admin_client.get(NAMESPACES, {"signing_policy": value}).context["cl"].result_list
        assert [row.pk for row in rows] == [namespace.pk], value

    for number in range(10):
        registry_services.create_namespace(instance=offline_instance, name=f"more{number}")
    with CaptureQueriesContext(connection) as more:
        admin_client.get(NAMESPACES)
    assert len(more) == len(queries)


def test_the_namespace_page_shows_a_policy_health_error(admin_client, offline_instance, key):
    namespace = registry_services.create_namespace(instance=offline_instance, name="team")
    services.create_policy(namespace=namespace, name="team-policy", key=key)
    url = reverse("admin:registry_namespace_change", args=[namespace.pk])
    assert "ok: Signing new pushes." in admin_client.get(url).content.decode()

    kms_services.disable_key(key_id=str(key.pk))

    page = admin_client.get(url).content.decode()
    assert "error: Key signer is Disabled: new images are not signed." in page
    listing = admin_client.get(NAMESPACES).content.decode()
    assert "(key Disabled)" in listing
