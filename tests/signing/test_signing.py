"""Signing images: a real docker-registry, the local KMS, the real services.

Pushes are recorded through ``registry.services.record_events`` with the notifications
Distribution sends for them; signing runs inline after the recording commits.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from kms import services as kms_services
from kms.models import AuthorizedService
from registry import services as registry_services
from registry.models import Manifest, RegistryEvent, Tag
from signing import artifacts, services
from signing.errors import NoSigningPolicy
from signing.models import (
    ArtifactCleanup,
    CleanupReason,
    Signature,
    SignatureStatus,
    SigningPolicy,
    Trigger,
)
from signing.payload import (
    KEY_FINGERPRINT_ANNOTATION,
    OCI_CONFIG_MEDIA_TYPE,
    OCI_MANIFEST_MEDIA_TYPE,
    SIGNATURE_ANNOTATION,
    SIMPLESIGNING_MEDIA_TYPE,
    build_payload,
    sha256_digest,
    signature_tag,
)
from signing.verification import verify_image
from tests.factories import make_user
from tests.signing.conftest import (
    DOMAIN,
    REPOSITORY,
    Signer,
    dead_url,
    delete_event,
    envelope,
    expected_payload,
    layer_fingerprints,
    manifest,
    point_instance_at,
    sig_layers,
    sig_manifest,
    verifies_with,
)

pytestmark = [
    pytest.mark.registry_server,
    pytest.mark.django_db(transaction=True),
]

LATER = timedelta(hours=2)


def signature_of(digest: str) -> Signature:
    return Signature.objects.select_related("policy").get(manifest__digest=digest)


# --- a push is signed ---------------------------------------------------------------------------


def test_a_push_into_a_namespace_with_a_policy_is_signed_in_the_cosign_format(
    policy, key, registry, push_image_event
):
    pushed = push_image_event(tag="v1", seed="signed")
    digest = pushed.digest

    # The database: one signed row with everything the artifact holds.
    row = signature_of(digest)
    payload = expected_payload(f"{DOMAIN}/{REPOSITORY}", digest)
    assert row.status == SignatureStatus.SIGNED
    assert (row.trigger, row.triggered_by, row.attempts) == (Trigger.PUSH, None, 1)
    assert (row.key_id, row.key_fingerprint) == (key.key_id, key.public_key_fingerprint)
    assert row.algorithm == "RSA_PKCS1_SHA_256"
    assert row.docker_reference == f"{DOMAIN}/{REPOSITORY}"
    assert bytes(row.payload) == payload
    assert (row.failure_code, row.failure_reason, row.next_attempt_at) == ("", "", None)
    assert row.claimed_until is None and row.signed_at is not None

    # The registry: the .sig artifact, byte for byte as signature-format.md describes it.
    sig = registry.get_manifest(REPOSITORY, signature_tag(digest))
    assert sig.digest == row.sig_manifest_digest
    assert sig.media_type == OCI_MANIFEST_MEDIA_TYPE
    document = sig.json
    assert document["schemaVersion"] == 2
    assert document["mediaType"] == OCI_MANIFEST_MEDIA_TYPE
    config_bytes = registry.get_blob(REPOSITORY, document["config"]["digest"])
    assert document["config"]["mediaType"] == OCI_CONFIG_MEDIA_TYPE
    assert document["config"]["size"] == len(config_bytes)
    assert config_bytes == (
        b'{"architecture":"","config":{},"created":"0001-01-01T00:00:00Z",'
        b'"history":[{"created":"0001-01-01T00:00:00Z"}],"os":"",'
        b'"rootfs":{"diff_ids":["' + sha256_digest(payload).encode() + b'"],"type":"layers"}}'
    )
    [layer] = document["layers"]
    assert layer["mediaType"] == SIMPLESIGNING_MEDIA_TYPE
    assert (layer["digest"], layer["size"]) == (sha256_digest(payload), len(payload))
    assert layer["annotations"] == {
        SIGNATURE_ANNOTATION: row.signature_value,
        KEY_FINGERPRINT_ANNOTATION: key.public_key_fingerprint,
    }
    assert registry.get_blob(REPOSITORY, layer["digest"]) == payload
    # The signature verifies with the policy key's public key, outside Signet.
    assert verifies_with(key.public_key_pem, payload, layer["annotations"][SIGNATURE_ANNOTATION])
    assert not verifies_with(key.public_key_pem, payload + b" ", row.signature_value)


def test_the_signed_identity_is_the_policy_domain_not_the_backend_address(
    namespace, key, authorized, registry, push_image_event
):
    from tests.signing.conftest import CUSTOM_DOMAIN

    services.create_policy(namespace=namespace, name="custom", key=key, domain=CUSTOM_DOMAIN)

    digest = push_image_event(tag="v1").digest

    [layer] = sig_layers(registry, REPOSITORY, digest)
    assert layer.payload == expected_payload(f"{CUSTOM_DOMAIN}/{REPOSITORY}", digest)
    assert signature_of(digest).docker_reference == f"{CUSTOM_DOMAIN}/{REPOSITORY}"


def test_images_pushed_before_the_policy_stay_unsigned_until_signing_is_requested(
    namespace, key, authorized, registry, push_image_event
):
    old = push_image_event(tag="v1", seed="before")
    policy = services.create_policy(namespace=namespace, name="late", key=key).policy

    assert not Signature.objects.exists()
    assert sig_manifest(registry, REPOSITORY, old.digest) is None

    actor = make_user("signer")
    result = services.request_signing(manifests=[manifest(old.digest)], actor=actor)

    assert (result.requested, result.already_signed, result.queued, result.no_policy) == (
        1,
        0,
        0,
        0,
    )
    assert (result.outcome.signed, result.outcome.failed, result.outcome.skipped) == (1, 0, 0)
    row = signature_of(old.digest)
    assert result.signature_ids == [row.pk]
    assert (row.status, row.trigger, row.triggered_by, row.policy) == (
        SignatureStatus.SIGNED,
        Trigger.MANUAL,
        actor,
        policy,
    )
    [layer] = sig_layers(registry, REPOSITORY, old.digest)
    assert layer.payload == expected_payload(f"{DOMAIN}/{REPOSITORY}", old.digest)
    assert verifies_with(key.public_key_pem, layer.payload, layer.signature_b64)


def test_a_new_push_after_the_policy_is_signed_while_the_older_tag_is_not(
    namespace, key, authorized, registry, push_image_event
):
    old = push_image_event(tag="v1", seed="before")
    services.create_policy(namespace=namespace, name="late", key=key)

    new = push_image_event(tag="v2", seed="after")

    assert list(Signature.objects.values_list("manifest__digest", flat=True)) == [new.digest]
    assert sig_manifest(registry, REPOSITORY, old.digest) is None
    assert len(sig_layers(registry, REPOSITORY, new.digest)) == 1


def test_a_disabled_policy_signs_nothing_on_push(
    namespace, key, authorized, registry, push_image_event
):
    services.create_policy(namespace=namespace, name="off", key=key, disabled=True)

    pushed = push_image_event(tag="v1")

    assert Manifest.objects.filter(digest=pushed.digest).exists()
    assert not Signature.objects.exists()
    assert sig_manifest(registry, REPOSITORY, pushed.digest) is None


def test_a_push_into_a_namespace_without_a_policy_is_not_signed(policy, registry, push_image_event):
    pushed = push_image_event("other/app", tag="v1")

    assert Manifest.objects.get(digest=pushed.digest).repository.namespace.name == "other"
    assert not Signature.objects.exists()
    assert sig_manifest(registry, "other/app", pushed.digest) is None


def test_requesting_signatures_where_there_is_no_policy_says_so(policy, push_image_event):
    pushed = push_image_event("other/app", tag="v1")

    with pytest.raises(NoSigningPolicy) as excinfo:
        services.request_signing(manifests=[manifest(pushed.digest)])

    assert excinfo.value.http_status == 409
    assert "Namespace other has no signing policy" in excinfo.value.message
    assert not Signature.objects.exists()


def test_images_imported_by_a_registry_sync_are_not_signed_automatically(
    policy, instance, registry
):
    from tests.support.oci import push_image

    digest = push_image(registry, REPOSITORY, "v1", seed="synced")

    result = registry_services.sync_instance(instance=instance)

    assert result.tags_created == 1
    assert Manifest.objects.filter(digest=digest).exists()
    assert not Signature.objects.exists()
    assert sig_manifest(registry, REPOSITORY, digest) is None


def test_a_tag_moved_to_a_new_image_signs_the_new_image(policy, registry, push_image_event):
    first = push_image_event(tag="latest", seed="one")
    second = push_image_event(tag="latest", seed="two")

    assert Tag.objects.get(name="latest").manifest.digest == second.digest
    assert set(
        Signature.objects.filter(status=SignatureStatus.SIGNED).values_list(
            "manifest__digest", flat=True
        )
    ) == {first.digest, second.digest}
    assert len(sig_layers(registry, REPOSITORY, second.digest)) == 1


# --- failures and retries -----------------------------------------------------------------------


def test_a_kms_failure_fails_the_signature_and_a_retry_after_the_backoff_signs_it(
    policy, key, registry, push_image_event
):
    kms_services.disable_key(key_id=str(key.key_id))
    before = timezone.now()

    pushed = push_image_event(tag="v1")

    row = signature_of(pushed.digest)
    assert row.status == SignatureStatus.FAILED
    assert row.failure_code == "ResourceUnavailable.CmkDisabled"
    assert "is disabled" in row.failure_reason
    assert row.attempts == 1 and row.claimed_until is None
    assert row.next_attempt_at is not None
    assert (
        before + timedelta(seconds=29)
        <= row.next_attempt_at
        <= timezone.now() + timedelta(seconds=31)
    )
    assert (row.key_id, row.signature_value, row.sig_manifest_digest) == (None, "", "")
    assert sig_manifest(registry, REPOSITORY, pushed.digest) is None
    assert services.policy_health(SigningPolicy.objects.get()).ok is False

    # Not due yet: a retry pass now leaves it alone.
    assert services.retry_signatures().signed == 0
    assert signature_of(pushed.digest).status == SignatureStatus.FAILED

    kms_services.enable_key(key_id=str(key.key_id))
    outcome = services.retry_signatures(now=timezone.now() + LATER)

    assert (outcome.signed, outcome.failed) == (1, 0)
    row = signature_of(pushed.digest)
    assert row.status == SignatureStatus.SIGNED
    assert (row.failure_code, row.failure_reason, row.next_attempt_at) == ("", "", None)
    assert row.attempts == 2
    [layer] = sig_layers(registry, REPOSITORY, pushed.digest)
    assert verifies_with(key.public_key_pem, layer.payload, layer.signature_b64)


def test_a_second_failure_backs_off_longer(policy, key, push_image_event):
    kms_services.disable_key(key_id=str(key.key_id))
    pushed = push_image_event(tag="v1")
    first_due = signature_of(pushed.digest).next_attempt_at

    moment = timezone.now()
    outcome = services.retry_signatures(now=moment + LATER)

    assert (outcome.signed, outcome.failed) == (0, 1)
    assert outcome.failures == [
        f"{REPOSITORY}@{pushed.digest}: {signature_of(pushed.digest).failure_reason}"
    ]
    row = signature_of(pushed.digest)
    assert row.attempts == 2
    assert row.next_attempt_at - moment >= timedelta(seconds=59)
    assert row.next_attempt_at > first_due


def test_a_revoked_service_authorization_fails_signing_with_that_code(
    policy, registry, push_image_event
):
    kms_services.revoke_service_authorization(service=AuthorizedService.REGISTRY_SIGNING)

    pushed = push_image_event(tag="v1")

    row = signature_of(pushed.digest)
    assert row.status == SignatureStatus.FAILED
    assert row.failure_code == "UnauthorizedOperation.ServiceNotAuthorized"
    assert sig_manifest(registry, REPOSITORY, pushed.digest) is None

    kms_services.grant_service_authorization(service=AuthorizedService.REGISTRY_SIGNING)
    assert services.retry_signatures(now=timezone.now() + LATER).signed == 1
    assert signature_of(pushed.digest).status == SignatureStatus.SIGNED


def test_a_registry_failure_fails_the_signature_and_a_retry_signs_it(
    policy, key, instance, registry, registry_server, push_image_event
):
    point_instance_at(instance, dead_url())

    pushed = push_image_event(tag="v1")

    row = signature_of(pushed.digest)
    assert row.status == SignatureStatus.FAILED
    assert row.failure_code == "InternalError.RegistryUnavailable"
    assert row.failure_reason.startswith("registry signet: ")
    # The first thing the worker does is fetch the image by digest from the registry.
    assert f"GET manifest {REPOSITORY}@{pushed.digest}" in row.failure_reason
    assert "after 3 attempts" in row.failure_reason
    assert row.next_attempt_at is not None
    assert sig_manifest(registry, REPOSITORY, pushed.digest) is None

    point_instance_at(instance, registry_server.url)
    outcome = services.retry_signatures(now=timezone.now() + LATER)

    assert (outcome.signed, outcome.failed) == (1, 0)
    row = signature_of(pushed.digest)
    assert (row.status, row.failure_code, row.failure_reason) == (SignatureStatus.SIGNED, "", "")
    [layer] = sig_layers(registry, REPOSITORY, pushed.digest)
    assert registry.head_manifest(REPOSITORY, signature_tag(pushed.digest)).digest == (
        row.sig_manifest_digest
    )
    assert verifies_with(key.public_key_pem, layer.payload, layer.signature_b64)


def test_retry_now_signs_a_failed_row_at_once(
    policy, instance, registry, registry_server, push_image_event
):
    point_instance_at(instance, dead_url())
    pushed = push_image_event(tag="v1")
    assert signature_of(pushed.digest).status == SignatureStatus.FAILED
    point_instance_at(instance, registry_server.url)

    outcome = services.retry_now(signatures=Signature.objects.all())

    assert outcome.signed == 1
    assert signature_of(pushed.digest).status == SignatureStatus.SIGNED
    assert len(sig_layers(registry, REPOSITORY, pushed.digest)) == 1


def test_a_pending_row_nobody_finished_is_picked_up_by_the_retry_pass(
    policy, key, registry, push_image_event
):
    # Work lost with its process: the hook wrote the pending row, the signing never ran.
    pushed = push_image_event(tag="v1", record=False)
    with override_settings(REGISTRY_PUSH_HANDLERS=[]):
        registry_services.record_events(
            instance=policy.namespace.instance, envelope=pushed.envelope
        )
    Signature.objects.create(policy=policy, manifest=manifest(pushed.digest), trigger=Trigger.PUSH)
    assert services.retry_signatures().signed == 0  # fresh: a worker may still be on it

    outcome = services.retry_signatures(now=timezone.now() + LATER)

    assert outcome.signed == 1
    assert signature_of(pushed.digest).status == SignatureStatus.SIGNED
    assert len(sig_layers(registry, REPOSITORY, pushed.digest)) == 1


# --- idempotence --------------------------------------------------------------------------------


def test_duplicate_events_and_repeated_requests_give_one_signature_and_one_layer(
    policy, instance, registry, push_image_event
):
    pushed = push_image_event(tag="v1")
    first_sig = signature_of(pushed.digest).sig_manifest_digest

    # The registry redelivers the same events, and sends a second copy with new ids.
    again = registry_services.record_events(instance=instance, envelope=pushed.envelope)
    copy = json.loads(json.dumps(pushed.envelope))
    copy["events"][0]["id"] = "another-delivery-of-the-same-push"
    registry_services.record_events(instance=instance, envelope=copy)
    # Users ask for it again and again.
    results = [services.request_signing(manifests=[manifest(pushed.digest)]) for _ in range(3)]

    assert again.duplicates == 1
    assert RegistryEvent.objects.count() == 2
    assert [(r.requested, r.already_signed, r.signature_ids) for r in results] == [(1, 1, [])] * 3
    assert Signature.objects.count() == 1
    row = signature_of(pushed.digest)
    assert (row.status, row.attempts, row.sig_manifest_digest) == (
        SignatureStatus.SIGNED,
        1,
        first_sig,
    )
    assert len(sig_layers(registry, REPOSITORY, pushed.digest)) == 1
    assert registry.head_manifest(REPOSITORY, signature_tag(pushed.digest)).digest == first_sig


def test_signing_a_row_twice_replaces_its_layer_instead_of_adding_one(
    policy, key, registry, push_image_event
):
    pushed = push_image_event(tag="v1")
    row = signature_of(pushed.digest)
    # Force a second signing of the same row with the same key (e.g. a manual "retry").
    Signature.objects.filter(pk=row.pk).update(status=SignatureStatus.FAILED, failure_code="Test")

    assert services.sign_signature(row.pk) == SignatureStatus.SIGNED

    layers = sig_layers(registry, REPOSITORY, pushed.digest)
    assert [layer.key_fingerprint for layer in layers] == [key.public_key_fingerprint]
    assert signature_of(pushed.digest).attempts == 2


def test_signing_an_already_signed_row_is_skipped(policy, push_image_event):
    pushed = push_image_event(tag="v1")
    row = signature_of(pushed.digest)

    assert services.sign_signature(row.pk) == "skipped"
    assert services.sign_signatures([row.pk]).skipped == 1
    assert signature_of(pushed.digest).attempts == 1


def test_more_requests_than_the_synchronous_limit_go_to_the_dispatcher(
    namespace, key, authorized, registry, push_image_event
):
    pushed = [push_image_event(tag=f"v{n}", seed=f"s{n}") for n in range(3)]
    services.create_policy(namespace=namespace, name="late", key=key)

    result = services.request_signing(
        manifests=[manifest(p.digest) for p in pushed], synchronous_limit=1
    )

    assert (result.requested, result.queued, result.outcome.signed) == (3, 2, 1)
    # Inline dispatch in tests: the queued ones are signed by now too.
    assert Signature.objects.filter(status=SignatureStatus.SIGNED).count() == 3
    for p in pushed:
        assert len(sig_layers(registry, REPOSITORY, p.digest)) == 1


# --- multi-arch ---------------------------------------------------------------------------------


def test_an_index_and_every_child_are_signed(policy, key, registry, push_index_event):
    pushed = push_index_event(tag="multi")

    digests = [pushed.digest, *pushed.children]
    assert (
        Signature.objects.filter(
            status=SignatureStatus.SIGNED, manifest__digest__in=digests
        ).count()
        == 3
    )
    assert Signature.objects.count() == 3
    for digest in digests:
        [layer] = sig_layers(registry, REPOSITORY, digest)
        assert layer.payload == expected_payload(f"{DOMAIN}/{REPOSITORY}", digest)
        assert verifies_with(key.public_key_pem, layer.payload, layer.signature_b64)


def test_requesting_a_signature_for_an_index_signs_its_children(
    namespace, key, authorized, registry, push_index_event
):
    pushed = push_index_event(tag="multi")
    services.create_policy(namespace=namespace, name="late", key=key)
    assert not Signature.objects.exists()

    result = services.request_signing(manifests=[manifest(pushed.digest)])

    assert (result.requested, result.outcome.signed) == (3, 3)
    assert set(Signature.objects.values_list("manifest__digest", flat=True)) == {
        pushed.digest,
        *pushed.children,
    }
    for digest in (pushed.digest, *pushed.children):
        assert len(sig_layers(registry, REPOSITORY, digest)) == 1


# --- key changes --------------------------------------------------------------------------------


def test_re_signing_after_a_key_change_replaces_the_old_keys_layer(
    policy, key, other_key, registry, push_image_event, push_index_event
):
    image = push_image_event(tag="v1")
    index = push_index_event(tag="multi")
    digests = [image.digest, index.digest, *index.children]

    outcome = services.update_policy(policy=policy, key=other_key)

    # Until re-signed, the old signatures stay valid, signed and visible.
    assert outcome.resign_candidates == 4
    for digest in digests:
        row = signature_of(digest)
        assert (row.status, row.key_id) == (SignatureStatus.SIGNED, key.key_id)
        assert layer_fingerprints(registry, REPOSITORY, digest) == [key.public_key_fingerprint]

    actor = make_user("resigner")
    result = services.resign_policy(policy=policy, actor=actor)

    assert (result.requested, result.outcome.signed, result.outcome.failed) == (4, 4, 0)
    assert services.resign_candidates(policy).count() == 0
    for digest in digests:
        row = signature_of(digest)
        assert (row.status, row.trigger, row.triggered_by) == (
            SignatureStatus.SIGNED,
            Trigger.RESIGN,
            actor,
        )
        assert (row.key_id, row.key_fingerprint) == (
            other_key.key_id,
            other_key.public_key_fingerprint,
        )
        [layer] = sig_layers(registry, REPOSITORY, digest)
        assert layer.key_fingerprint == other_key.public_key_fingerprint
        assert verifies_with(other_key.public_key_pem, layer.payload, layer.signature_b64)
        assert not verifies_with(key.public_key_pem, layer.payload, layer.signature_b64)
        assert registry.head_manifest(REPOSITORY, signature_tag(digest)).digest == (
            row.sig_manifest_digest
        )
    assert verify_image(image=f"{DOMAIN}/{REPOSITORY}:v1").verified is True


def test_a_failed_re_sign_keeps_the_old_signature(
    policy, key, other_key, registry, push_image_event
):
    pushed = push_image_event(tag="v1")
    services.update_policy(policy=policy, key=other_key)
    kms_services.disable_key(key_id=str(other_key.key_id))

    result = services.resign_policy(policy=policy)

    assert result.outcome.failed == 1
    row = signature_of(pushed.digest)
    assert (row.status, row.key_id) == (SignatureStatus.SIGNED, key.key_id)
    assert row.failure_code == "ResourceUnavailable.CmkDisabled"
    assert row.next_attempt_at is not None
    assert layer_fingerprints(registry, REPOSITORY, pushed.digest) == [key.public_key_fingerprint]

    kms_services.enable_key(key_id=str(other_key.key_id))
    assert services.retry_signatures(now=timezone.now() + LATER).signed == 1
    row = signature_of(pushed.digest)
    assert (row.key_id, row.failure_code) == (other_key.key_id, "")
    assert layer_fingerprints(registry, REPOSITORY, pushed.digest) == [
        other_key.public_key_fingerprint
    ]


# --- deleting a policy --------------------------------------------------------------------------


def test_deleting_a_policy_removes_its_records_and_its_sig_artifacts(
    policy, registry, push_image_event, push_index_event
):
    image = push_image_event(tag="v1")
    index = push_index_event(tag="multi")
    digests = [image.digest, index.digest, *index.children]
    assert services.signatures_removed_by_deleting(policy) == 4

    removed = services.delete_policy(policy=policy)

    assert removed == 4
    assert not SigningPolicy.objects.exists()
    assert not Signature.objects.exists()
    assert not ArtifactCleanup.objects.exists()
    for digest in digests:
        assert registry.head_manifest(REPOSITORY, signature_tag(digest)) is None
        assert registry.head_manifest(REPOSITORY, digest) is not None  # the image stays
    with pytest.raises(NoSigningPolicy):
        verify_image(image=f"{DOMAIN}/{REPOSITORY}:v1")


def test_deleting_a_policy_while_the_registry_is_down_keeps_the_removals_until_they_succeed(
    policy, key, instance, registry, registry_server, push_image_event
):
    first = push_image_event(tag="v1", seed="one")
    second = push_image_event(tag="v2", seed="two")
    point_instance_at(instance, dead_url())

    assert services.delete_policy(policy=policy) == 2

    assert not SigningPolicy.objects.exists()
    assert not Signature.objects.exists()
    cleanups = list(ArtifactCleanup.objects.order_by("manifest_digest"))
    assert sorted(c.manifest_digest for c in cleanups) == sorted([first.digest, second.digest])
    for cleanup in cleanups:
        assert (cleanup.repository, cleanup.reason) == (REPOSITORY, CleanupReason.POLICY_DELETED)
        assert cleanup.key_fingerprint == key.public_key_fingerprint
        assert cleanup.attempts == 1
        assert cleanup.last_error.startswith("registry signet: ")
        assert cleanup.next_attempt_at is not None
    # Still in the registry.
    assert len(sig_layers(registry, REPOSITORY, first.digest)) == 1

    # Not due yet; and while the registry is still down a due pass fails again.
    assert services.run_cleanups() == (0, 0)
    assert services.run_cleanups(now=timezone.now() + LATER) == (0, 2)
    assert set(ArtifactCleanup.objects.values_list("attempts", flat=True)) == {2}

    point_instance_at(instance, registry_server.url)
    services.retry_signatures(now=timezone.now() + LATER)

    assert not ArtifactCleanup.objects.exists()
    for pushed in (first, second):
        assert registry.head_manifest(REPOSITORY, signature_tag(pushed.digest)) is None


def test_run_cleanups_removes_queued_artifacts_once_the_registry_is_back(
    policy, instance, registry, registry_server, push_image_event
):
    pushed = push_image_event(tag="v1")
    point_instance_at(instance, dead_url())
    services.delete_policy(policy=policy)
    assert ArtifactCleanup.objects.count() == 1
    point_instance_at(instance, registry_server.url)

    assert services.run_cleanups(now=timezone.now() + LATER) == (1, 0)

    assert not ArtifactCleanup.objects.exists()
    assert registry.head_manifest(REPOSITORY, signature_tag(pushed.digest)) is None


def test_deleting_a_policy_removes_only_its_own_keys_layer(
    tmp_path, policy, key, registry, push_image_event
):
    pushed = push_image_event(tag="v1")
    stranger = Signer.create(tmp_path / "stranger.pub")
    payload = build_payload(
        docker_reference=f"{DOMAIN}/{REPOSITORY}", manifest_digest=pushed.digest
    )
    artifacts.publish(registry, REPOSITORY, pushed.digest, stranger.sign(payload))
    assert layer_fingerprints(registry, REPOSITORY, pushed.digest) == [
        key.public_key_fingerprint,
        stranger.fingerprint,
    ]

    services.delete_policy(policy=policy)

    assert not ArtifactCleanup.objects.exists()
    [layer] = sig_layers(registry, REPOSITORY, pushed.digest)
    assert layer.key_fingerprint == stranger.fingerprint
    assert layer.payload == payload


def test_a_stranger_signing_before_signet_keeps_its_layer_first(
    tmp_path, namespace, key, authorized, registry, push_image_event
):
    pushed = push_image_event(tag="v1")
    stranger = Signer.create(tmp_path / "stranger.pub")
    payload = build_payload(
        docker_reference=f"{DOMAIN}/{REPOSITORY}", manifest_digest=pushed.digest
    )
    artifacts.publish(registry, REPOSITORY, pushed.digest, stranger.sign(payload))
    services.create_policy(namespace=namespace, name="late", key=key)

    services.request_signing(manifests=[manifest(pushed.digest)])

    assert layer_fingerprints(registry, REPOSITORY, pushed.digest) == [
        stranger.fingerprint,
        key.public_key_fingerprint,
    ]


# --- deleting an image --------------------------------------------------------------------------


def test_deleting_an_image_removes_its_signatures_and_its_sig_artifact(
    policy, instance, registry, push_image_event
):
    kept = push_image_event(tag="v1", seed="kept")
    gone = push_image_event(tag="v2", seed="gone")

    registry.delete_manifest(REPOSITORY, gone.digest)
    result = registry_services.record_events(
        instance=instance, envelope=envelope(delete_event(REPOSITORY, gone.digest))
    )

    assert (result.manifests_deleted, result.handler_errors) == (1, 0)
    assert not Manifest.objects.filter(digest=gone.digest).exists()
    assert list(Signature.objects.values_list("manifest__digest", flat=True)) == [kept.digest]
    assert not ArtifactCleanup.objects.exists()
    assert registry.head_manifest(REPOSITORY, signature_tag(gone.digest)) is None
    assert len(sig_layers(registry, REPOSITORY, kept.digest)) == 1


def test_deleting_an_image_while_the_registry_is_down_queues_the_removal(
    policy, instance, registry, registry_server, push_image_event
):
    gone = push_image_event(tag="v1")
    registry.delete_manifest(REPOSITORY, gone.digest)
    point_instance_at(instance, dead_url())

    registry_services.record_events(
        instance=instance, envelope=envelope(delete_event(REPOSITORY, gone.digest))
    )

    assert not Signature.objects.exists()
    cleanup = ArtifactCleanup.objects.get()
    assert (cleanup.manifest_digest, cleanup.key_fingerprint, cleanup.reason) == (
        gone.digest,
        "",
        CleanupReason.IMAGE_DELETED,
    )
    assert cleanup.last_error
    assert registry.head_manifest(REPOSITORY, signature_tag(gone.digest)) is not None

    point_instance_at(instance, registry_server.url)
    services.retry_signatures(now=timezone.now() + LATER)

    assert not ArtifactCleanup.objects.exists()
    assert registry.head_manifest(REPOSITORY, signature_tag(gone.digest)) is None


def test_deleting_a_namespace_record_removes_only_signets_layers_from_images_that_stay(
    tmp_path, policy, key, namespace, registry, push_image_event
):
    # Deleting a namespace in Signet deletes its records, not the images in the registry:
    # the signatures other tools wrote for those images must survive.
    pushed = push_image_event(tag="v1")
    stranger = Signer.create(tmp_path / "stranger.pub")
    payload = build_payload(
        docker_reference=f"{DOMAIN}/{REPOSITORY}", manifest_digest=pushed.digest
    )
    artifacts.publish(registry, REPOSITORY, pushed.digest, stranger.sign(payload))

    registry_services.delete_namespace(namespace=namespace)

    assert not SigningPolicy.objects.exists()
    assert not Signature.objects.exists()
    assert not ArtifactCleanup.objects.exists()
    assert registry.head_manifest(REPOSITORY, pushed.digest) is not None
    assert layer_fingerprints(registry, REPOSITORY, pushed.digest) == [stranger.fingerprint]


def test_deleting_a_namespace_record_removes_the_sig_artifact_signet_wrote(
    policy, namespace, registry, push_image_event
):
    pushed = push_image_event(tag="v1")

    registry_services.delete_namespace(namespace=namespace)

    assert not Signature.objects.exists()
    assert not ArtifactCleanup.objects.exists()
    assert registry.head_manifest(REPOSITORY, signature_tag(pushed.digest)) is None
    assert registry.head_manifest(REPOSITORY, pushed.digest) is not None


def test_a_removal_still_queued_from_a_deleted_policy_spares_a_newer_signature(
    policy, key, namespace, instance, registry, registry_server, push_image_event
):
    pushed = push_image_event(tag="v1")
    point_instance_at(instance, dead_url())
    services.delete_policy(policy=policy)
    assert ArtifactCleanup.objects.count() == 1
    point_instance_at(instance, registry_server.url)
    # The namespace gets a policy with the same key again and the image is signed again
    # before the queued removal of the old policy's layer has run.
    services.create_policy(namespace=namespace, name="again", key=key)
    services.request_signing(manifests=[manifest(pushed.digest)])

    services.retry_signatures(now=timezone.now() + LATER)

    row = signature_of(pushed.digest)
    assert row.status == SignatureStatus.SIGNED
    assert layer_fingerprints(registry, REPOSITORY, pushed.digest) == [key.public_key_fingerprint]
    assert registry.head_manifest(REPOSITORY, signature_tag(pushed.digest)).digest == (
        row.sig_manifest_digest
    )
    assert verify_image(image=f"{DOMAIN}/{REPOSITORY}:v1").verified is True


def test_a_removal_queued_for_a_deleted_image_spares_the_image_pushed_again(
    policy, key, instance, registry, registry_server, push_image_event
):
    pushed = push_image_event(tag="v1")
    registry.delete_manifest(REPOSITORY, pushed.digest)
    point_instance_at(instance, dead_url())
    registry_services.record_events(
        instance=instance, envelope=envelope(delete_event(REPOSITORY, pushed.digest))
    )
    assert ArtifactCleanup.objects.count() == 1
    point_instance_at(instance, registry_server.url)

    again = push_image_event(tag="v1")  # the very same image, pushed again
    services.retry_signatures(now=timezone.now() + LATER)

    assert again.digest == pushed.digest
    assert signature_of(pushed.digest).status == SignatureStatus.SIGNED
    assert layer_fingerprints(registry, REPOSITORY, pushed.digest) == [key.public_key_fingerprint]
    assert verify_image(image=f"{DOMAIN}/{REPOSITORY}:v1").verified is True


# --- scopes -------------------------------------------------------------------------------------


def test_tags_in_scope_narrows_by_namespace_repository_and_tags(policy, instance, push_image_event):
    push_image_event(REPOSITORY, tag="v1", seed="a")
    push_image_event(REPOSITORY, tag="v2", seed="b")
    push_image_event("team/web", tag="v1", seed="c")
    push_image_event("other/app", tag="v1", seed="d")

    def names(**scope):
        return sorted(
            f"{t.repository.name}:{t.name}"
            for t in services.tags_in_scope(instance=instance, **scope)
        )

    assert names() == ["other/app:v1", "team/app:v1", "team/app:v2", "team/web:v1"]
    assert names(namespace="team") == ["team/app:v1", "team/app:v2", "team/web:v1"]
    assert names(namespace="team", repository="app") == ["team/app:v1", "team/app:v2"]
    assert names(namespace="team", repository="team/app") == ["team/app:v1", "team/app:v2"]
    assert names(repository="team/web") == ["team/web:v1"]
    assert names(namespace="team", repository="app", tags=["v2", "v9"]) == ["team/app:v2"]


def test_changing_the_domain_offers_a_re_sign_that_signs_the_new_identity(
    policy, instance, registry, push_image_event
):
    from registry.models import InstanceDomain

    pushed = push_image_event(tag="v1")
    InstanceDomain.objects.create(instance=instance, name="mirror.signet.test")

    outcome = services.update_policy(policy=policy, domain="mirror.signet.test")

    assert outcome.resign_candidates == 1
    row = signature_of(pushed.digest)
    assert row.docker_reference == f"{DOMAIN}/{REPOSITORY}"  # still the old identity
    result = services.resign_policy(policy=policy)
    assert (result.outcome.signed, result.outcome.failed) == (1, 0)
    row = signature_of(pushed.digest)
    assert row.docker_reference == f"mirror.signet.test/{REPOSITORY}"
    [layer] = sig_layers(registry, REPOSITORY, pushed.digest)  # replaced, not added
    assert layer.payload == expected_payload(f"mirror.signet.test/{REPOSITORY}", pushed.digest)
    assert services.resign_candidates(policy).count() == 0


def test_a_failed_signature_handed_off_but_never_finished_is_still_retried(
    policy, key, push_image_event
):
    kms_services.disable_key(key_id=str(key.key_id))
    pushed = push_image_event(tag="v1")
    row = signature_of(pushed.digest)
    assert row.status == SignatureStatus.FAILED
    # A re-request cleared the backoff and handed the row to a worker that then died.
    Signature.objects.filter(pk=row.pk).update(
        next_attempt_at=None, updated_at=timezone.now() - timedelta(hours=1)
    )
    kms_services.enable_key(key_id=str(key.key_id))

    outcome = services.retry_signatures()

    assert outcome.signed == 1
    assert signature_of(pushed.digest).status == SignatureStatus.SIGNED
