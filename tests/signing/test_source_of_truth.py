"""Signet signs only what the registry holds, fetched by digest and hashed by Signet.

A push or delete event (or a sign request) only *claims* a digest, a media type, an
index's children, a deletion. Whoever holds the webhook token must not be able to get a
signature for an image of their own, nor take a real image's signature away. Every test
runs against a real docker-registry; where a hostile registry is needed (bytes that do
not hash to their digest), a scripted one on loopback plays it.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from audit.models import AuditEvent
from kms import services as kms_services
from kms.models import AuthorizedService
from kms.services import operations
from registry import services as registry_services
from registry.client import OCI_INDEX, OCI_MANIFEST
from registry.models import Manifest, ManifestReference, Tag
from signing import artifacts, services
from signing.models import ArtifactCleanup, Signature, SignatureStatus, SigningPolicy
from signing.payload import SignatureLayer, build_payload, signing_annotations
from tests.factories import make_key, make_user
from tests.signing.conftest import (
    EVENTS_TYPE,
    REPOSITORY,
    delete_event,
    envelope,
    point_instance_at,
    push_event,
    sig_layers,
    sig_manifest,
    verifies_with,
)
from tests.support.oci import build_image, push_built_image
from tests.support.stub_registry import Reply, SeenRequest, StubRegistry

pytestmark = [
    pytest.mark.registry_server,
    pytest.mark.django_db(transaction=True),  # signing starts on commit, as in production
]

LATER = timedelta(days=1)


def never_pushed_digest(seed: str = "forged") -> str:
    return "sha256:" + hashlib.sha256(f"an image nobody pushed: {seed}".encode()).hexdigest()


def deliver(client, instance, token: str, *events) -> None:
    """Post events to the real webhook view, as the registry (or a token holder) would."""
    response = client.post(
        reverse("registry-webhook", kwargs={"instance_name": instance.name}),
        data=json.dumps(envelope(*events)),
        content_type=EVENTS_TYPE,
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert response.status_code == 200, response.content


def row_for(digest: str) -> Signature:
    return Signature.objects.select_related("manifest").get(manifest__digest=digest)


def superuser_api() -> APIClient:
    client = APIClient()
    client.force_authenticate(make_user(is_superuser=True, is_staff=True))
    return client


# --- forged pushes ----------------------------------------------------------------------------


def test_a_forged_push_event_publishes_nothing_and_fails_with_manifest_unknown(
    client, policy, instance, webhook_token, registry
):
    digest = never_pushed_digest()

    deliver(client, instance, webhook_token, push_event(REPOSITORY, digest, tag="v1"))

    row = row_for(digest)
    assert row.status == SignatureStatus.FAILED
    assert row.failure_code == "ManifestUnknown"
    assert f"does not hold {REPOSITORY}@{digest}" in row.failure_reason
    assert row.next_attempt_at is not None  # a registry still writing gets another try
    assert (row.payload, row.signature_value, row.sig_manifest_digest) == (None, "", "")
    assert sig_manifest(registry, REPOSITORY, digest) is None


def test_an_image_pushed_after_its_event_is_signed_by_the_retry(
    client, policy, instance, webhook_token, registry, key
):
    image = build_image(seed="late")
    digest = "sha256:" + hashlib.sha256(image.manifest).hexdigest()
    deliver(client, instance, webhook_token, push_event(REPOSITORY, digest, tag="v1"))
    assert row_for(digest).failure_code == "ManifestUnknown"

    push_built_image(registry, REPOSITORY, image, "v1")
    outcome = services.retry_signatures(now=timezone.now() + LATER)

    assert (outcome.signed, outcome.failed) == (1, 0)
    assert row_for(digest).status == SignatureStatus.SIGNED
    [layer] = sig_layers(registry, REPOSITORY, digest)
    assert verifies_with(key.public_key_pem, layer.payload, layer.signature_b64)


def test_a_digest_that_stays_unknown_is_given_up_after_the_bounded_attempts(
    client, settings, policy, instance, webhook_token, registry
):
    settings.SIGNING_MANIFEST_CHECK_ATTEMPTS = 3
    digest = never_pushed_digest()
    deliver(client, instance, webhook_token, push_event(REPOSITORY, digest, tag="v1"))

    for day in (1, 2, 3, 4):
        services.retry_signatures(now=timezone.now() + timedelta(days=day))

    row = row_for(digest)
    assert row.attempts == 3
    assert (row.status, row.failure_code) == (SignatureStatus.FAILED, "ManifestUnknown")
    assert row.next_attempt_at is None  # given up: failed and visible, not retried
    assert sig_manifest(registry, REPOSITORY, digest) is None
    # A forged push of the same digest again does not earn it more tries ...
    deliver(client, instance, webhook_token, push_event(REPOSITORY, digest, tag="v2"))
    assert row_for(digest).attempts == 4
    assert row_for(digest).next_attempt_at is None
    # ... a person asking again does (and gets the same answer, with a next try scheduled).
    outcome = services.retry_now(signatures=[row])
    assert (outcome.signed, outcome.failed) == (0, 1)
    row = row_for(digest)
    assert (row.attempts, row.failure_code) == (1, "ManifestUnknown")
    assert row.next_attempt_at is not None


def test_a_push_event_naming_another_repositorys_image_is_not_signed(
    client, policy, instance, webhook_token, registry
):
    """The digest exists in the registry, but not in the repository the event names: a
    signature for team/forged would vouch for someone else's image under its identity."""
    image = build_image(seed="elsewhere")
    digest = push_built_image(registry, "team/real", image, "v1")

    deliver(client, instance, webhook_token, push_event("team/forged", digest, tag="v1"))

    row = Signature.objects.get(manifest__repository__name="team/forged")
    assert row.failure_code == "ManifestUnknown"
    assert sig_manifest(registry, "team/forged", digest) is None
    assert sig_manifest(registry, "team/real", digest) is None


# --- indexes: children come from the fetched index --------------------------------------------


def push_index(registry, repository: str, tag: str, *, seed: str) -> tuple[str, list[str]]:
    references, children = [], []
    for arch in ("amd64", "arm64"):
        image = build_image(seed=seed, os="linux", architecture=arch)
        child = push_built_image(registry, repository, image, None)
        children.append(child)
        references.append(
            {
                "mediaType": OCI_MANIFEST,
                "digest": child,
                "size": len(image.manifest),
                "platform": {"os": "linux", "architecture": arch},
            }
        )
    index = json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": references},
        separators=(",", ":"),
    ).encode()
    return registry.put_manifest(repository, tag, index, OCI_INDEX), children


def test_an_index_event_with_forged_references_signs_the_children_the_registry_lists(
    client, policy, instance, webhook_token, registry, key
):
    index_digest, children = push_index(registry, REPOSITORY, "multi", seed="idx")
    forged_child = never_pushed_digest("child")
    # No child events, and references that name a digest the index does not contain.
    deliver(
        client,
        instance,
        webhook_token,
        push_event(
            REPOSITORY,
            index_digest,
            media_type=OCI_INDEX,
            tag="multi",
            references=[{"mediaType": OCI_MANIFEST, "digest": forged_child, "size": 10}],
        ),
    )

    index = Manifest.objects.get(digest=index_digest)
    assert sorted(
        ManifestReference.objects.filter(parent=index).values_list("child_digest", flat=True)
    ) == sorted(children)
    assert not Signature.objects.filter(manifest__digest=forged_child).exists()
    assert sig_manifest(registry, REPOSITORY, forged_child) is None
    for digest in [index_digest, *children]:
        assert row_for(digest).status == SignatureStatus.SIGNED, digest
        [layer] = sig_layers(registry, REPOSITORY, digest)
        assert verifies_with(key.public_key_pem, layer.payload, layer.signature_b64)


def test_a_media_type_the_event_gets_wrong_is_corrected_from_the_registry(
    client, policy, instance, webhook_token, registry
):
    index_digest, children = push_index(registry, REPOSITORY, "multi", seed="lie")

    deliver(
        client,
        instance,
        webhook_token,
        push_event(REPOSITORY, index_digest, media_type=OCI_MANIFEST, size=1, tag="multi"),
    )

    index = Manifest.objects.get(digest=index_digest)
    assert index.media_type == OCI_INDEX
    assert index.size == len(registry.get_manifest(REPOSITORY, index_digest).content)
    assert all(row_for(d).status == SignatureStatus.SIGNED for d in [index_digest, *children])


# --- a registry whose answer cannot be trusted -------------------------------------------------


def sign_through_a_registry_that_serves(instance, digest: str, body: bytes, headers):
    """Record a push of ``digest`` while the instance's registry answers its manifest GET
    with ``body`` and ``headers`` (404 for anything else); the row and what was asked."""

    def handler(request: SeenRequest) -> Reply:
        if request.method == "GET" and request.path.endswith(f"/manifests/{digest}"):
            return Reply(200, body, headers)
        return Reply(404, b"")

    with StubRegistry(handler) as stub:
        point_instance_at(instance, stub.url)
        registry_services.record_events(
            instance=instance, envelope=envelope(push_event(REPOSITORY, digest, tag="v1"))
        )
    return row_for(digest), [request.method for request in stub.requests]


def test_bytes_that_do_not_hash_to_the_digest_are_not_signed(policy, instance):
    digest = never_pushed_digest("substituted")
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST}).encode()

    row, asked = sign_through_a_registry_that_serves(
        instance, digest, body, {"Content-Type": OCI_MANIFEST}
    )

    assert (row.status, row.failure_code) == (SignatureStatus.FAILED, "ManifestInvalid")
    assert "digest mismatch" in row.failure_reason
    assert asked == ["GET"]  # nothing uploaded, nothing put


def test_a_manifest_that_is_not_an_image_is_not_signed(policy, instance):
    body = b'{"architecture":"amd64","os":"linux"}'  # an image config, served as such
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    config_type = "application/vnd.oci.image.config.v1+json"

    row, asked = sign_through_a_registry_that_serves(
        instance, digest, body, {"Content-Type": config_type, "Docker-Content-Digest": digest}
    )

    assert (row.status, row.failure_code) == (SignatureStatus.FAILED, "ManifestInvalid")
    assert f"is {config_type}, not an image manifest or index" in row.failure_reason
    assert asked == ["GET"]


def test_a_manifest_too_large_to_verify_is_not_signed(policy, instance):
    body = b'{"schemaVersion":2,"padding":"' + b"x" * (5 * 1024 * 1024) + b'"}'
    digest = "sha256:" + hashlib.sha256(body).hexdigest()

    row, asked = sign_through_a_registry_that_serves(
        instance, digest, body, {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": digest}
    )

    assert (row.status, row.failure_code) == (SignatureStatus.FAILED, "ManifestInvalid")
    assert asked == ["GET"]


# --- the same rule for every way of asking ----------------------------------------------------


@pytest.fixture
def forged_tag(instance, namespace, registry) -> Tag:
    """A tag Signet recorded from an event, for an image the registry never held (recorded
    before the namespace had a policy, so the push itself signed nothing)."""
    digest = never_pushed_digest("recorded")
    registry_services.record_events(
        instance=instance, envelope=envelope(push_event(REPOSITORY, digest, tag="v1"))
    )
    return Tag.objects.select_related("manifest").get(manifest__digest=digest)


def test_the_sign_api_refuses_to_sign_an_image_the_registry_does_not_hold(
    forged_tag, policy, registry
):
    response = superuser_api().post(f"/api/v1/registry/tags/{forged_tag.pk}/sign/")

    assert response.status_code in (200, 202), response.content
    row = row_for(forged_tag.manifest.digest)
    assert (row.status, row.failure_code) == (SignatureStatus.FAILED, "ManifestUnknown")
    assert sig_manifest(registry, REPOSITORY, forged_tag.manifest.digest) is None


def test_a_bulk_sign_request_signs_the_real_image_and_fails_the_forged_one(
    forged_tag, policy, registry, instance
):
    real = push_built_image(registry, REPOSITORY, build_image(seed="real"), "v2")
    registry_services.sync_instance(instance=instance)

    result = services.request_signing(manifests=list(Manifest.objects.all()))

    assert (result.outcome.signed, result.outcome.failed) == (1, 1)
    assert row_for(real).status == SignatureStatus.SIGNED
    assert row_for(forged_tag.manifest.digest).failure_code == "ManifestUnknown"
    assert sig_manifest(registry, REPOSITORY, forged_tag.manifest.digest) is None


def test_backfill_fails_loudly_for_an_image_the_registry_does_not_hold(
    forged_tag, policy, registry, instance
):
    out = StringIO()
    with pytest.raises(CommandError):
        call_command("backfill_signatures", "--instance", instance.name, stdout=out, stderr=out)

    assert row_for(forged_tag.manifest.digest).failure_code == "ManifestUnknown"
    assert "ManifestUnknown" in out.getvalue() or "does not hold" in out.getvalue()
    assert sig_manifest(registry, REPOSITORY, forged_tag.manifest.digest) is None


def test_a_resign_of_an_image_gone_from_the_registry_keeps_the_old_signature(
    policy, registry, push_image_event
):
    pushed = push_image_event(tag="v1")
    signed = row_for(pushed.digest)
    assert signed.status == SignatureStatus.SIGNED
    registry.delete_manifest(REPOSITORY, pushed.digest)  # behind Signet's back: no event
    services.update_policy(policy=policy, key=make_key("next-key"))

    result = services.resign_policy(policy=policy)

    assert result.outcome.failed == 1
    row = row_for(pushed.digest)
    assert (row.status, row.failure_code) == (SignatureStatus.SIGNED, "ManifestUnknown")
    assert row.key_fingerprint == signed.key_fingerprint  # still the old, valid record


# --- forged deletes -------------------------------------------------------------------------


def test_a_forged_delete_event_for_a_present_image_keeps_its_signature(
    client, policy, instance, webhook_token, registry, push_image_event, key
):
    pushed = push_image_event(tag="v1")
    assert len(sig_layers(registry, REPOSITORY, pushed.digest)) == 1

    deliver(client, instance, webhook_token, delete_event(REPOSITORY, pushed.digest))

    [layer] = sig_layers(registry, REPOSITORY, pushed.digest)
    assert verifies_with(key.public_key_pem, layer.payload, layer.signature_b64)
    assert not ArtifactCleanup.objects.exists()  # settled, not left to retry forever
    kept = AuditEvent.objects.get(action="signing.artifact.kept")
    assert kept.object_repr == f"{REPOSITORY}@{pushed.digest}"
    assert kept.instance_name == instance.name
    # Signet's records agree with the registry again: the tag, the image, its signature.
    assert Tag.objects.get(repository__name=REPOSITORY, name="v1").manifest.digest == (
        pushed.digest
    )
    assert row_for(pushed.digest).status == SignatureStatus.SIGNED


def test_a_policy_deleted_after_a_forged_delete_still_removes_the_signature(
    client, policy, instance, webhook_token, registry, push_image_event
):
    """Deleting the policy revokes trust in its signatures: a forged delete earlier must
    not have made Signet forget the .sig it would need to remove."""
    pushed = push_image_event(tag="v1")
    deliver(client, instance, webhook_token, delete_event(REPOSITORY, pushed.digest))
    assert len(sig_layers(registry, REPOSITORY, pushed.digest)) == 1

    services.delete_policy(policy=policy)

    assert sig_manifest(registry, REPOSITORY, pushed.digest) is None


def test_a_real_delete_removes_the_signature(
    client, policy, instance, webhook_token, registry, push_image_event
):
    pushed = push_image_event(tag="v1")
    registry.delete_manifest(REPOSITORY, pushed.digest)

    deliver(client, instance, webhook_token, delete_event(REPOSITORY, pushed.digest))

    assert sig_manifest(registry, REPOSITORY, pushed.digest) is None
    assert not ArtifactCleanup.objects.exists()
    assert not AuditEvent.objects.filter(action="signing.artifact.kept").exists()


# --- signatures published before Signet checked the registry ---------------------------------


def publish_the_old_way(registry, policy, key, digest: str, tag: str) -> Signature:
    """What a forged push event got before this check: a signed row and a .sig layer for a
    digest the registry never held."""
    registry_services.record_events(
        instance=policy.namespace.instance,
        envelope=envelope(push_event(REPOSITORY, digest, tag=tag)),
    )
    row = row_for(digest)  # failed now (ManifestUnknown); make it what the old code left
    reference = f"{policy.domain}/{REPOSITORY}"
    payload = build_payload(docker_reference=reference, manifest_digest=digest)
    signature_b64 = base64.b64encode(
        operations.sign(
            key_id=str(key.key_id),
            message=payload,
            algorithm="RSA_PKCS1_SHA_256",
            on_behalf_of=AuthorizedService.REGISTRY_SIGNING,
        )
    ).decode()
    layer = SignatureLayer(
        payload=payload,
        signature_b64=signature_b64,
        annotations=signing_annotations(key_fingerprint=key.public_key_fingerprint),
    )
    sig_digest = artifacts.publish(registry, REPOSITORY, digest, layer)
    Signature.objects.filter(pk=row.pk).update(
        status=SignatureStatus.SIGNED,
        failure_code="",
        failure_reason="",
        key_id=key.key_id,
        key_fingerprint=key.public_key_fingerprint,
        docker_reference=reference,
        payload=payload,
        signature_value=signature_b64,
        sig_manifest_digest=sig_digest,
        signed_at=timezone.now(),
    )
    return row_for(digest)


def test_recheck_finds_and_revokes_signatures_of_images_the_registry_does_not_hold(
    policy, key, instance, registry, push_image_event
):
    real = push_image_event(tag="v1")
    forged = never_pushed_digest("signed-before-the-upgrade")
    publish_the_old_way(registry, policy, key, forged, "v2")
    assert len(sig_layers(registry, REPOSITORY, forged)) == 1

    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError, match="1 signed image"):
        call_command("recheck_signatures", "--instance", instance.name, stdout=out, stderr=err)
    assert f"not held: {REPOSITORY}@{forged}: ManifestUnknown" in err.getvalue()
    assert "Checked 2 signed image(s): 1 held by the registry, 1 not held, 0 revoked" in (
        out.getvalue()
    )
    assert len(sig_layers(registry, REPOSITORY, forged)) == 1  # a report changes nothing

    call_command(
        "recheck_signatures", "--instance", instance.name, "--remove", stdout=out, stderr=err
    )

    assert sig_manifest(registry, REPOSITORY, forged) is None
    row = row_for(forged)
    assert (row.status, row.failure_code, row.sig_manifest_digest) == (
        SignatureStatus.FAILED,
        "ManifestUnknown",
        "",
    )
    services.retry_signatures(now=timezone.now() + LATER)
    assert row_for(forged).attempts == row.attempts  # given up: not retried on its own
    revoked = AuditEvent.objects.get(action="signing.signature.revoked")
    assert revoked.object_repr == f"{REPOSITORY}@{forged}"
    assert row_for(real.digest).status == SignatureStatus.SIGNED
    assert len(sig_layers(registry, REPOSITORY, real.digest)) == 1


def assert_restored_and_revocable(registry, policy, digest: str, fingerprint: str) -> None:
    """Signet's signature row is back, names the .sig the registry holds, and deleting the
    policy (revoking trust) still removes that signature."""
    row = row_for(digest)
    assert (row.status, row.key_fingerprint) == (SignatureStatus.SIGNED, fingerprint)
    assert row.sig_manifest_digest == sig_manifest(registry, REPOSITORY, digest).digest
    services.delete_policy(policy=SigningPolicy.objects.get(pk=policy.pk))
    assert sig_manifest(registry, REPOSITORY, digest) is None


def test_a_forged_delete_of_an_untagged_image_restores_its_records(
    client, policy, instance, webhook_token, registry, push_image_event, key
):
    old = push_image_event(tag="v1", seed="old")
    push_image_event(tag="v1", seed="new")  # the tag moves on; the old image stays, untagged
    assert not Tag.objects.filter(manifest__digest=old.digest).exists()

    deliver(client, instance, webhook_token, delete_event(REPOSITORY, old.digest))

    assert Manifest.objects.filter(digest=old.digest).exists()
    assert_restored_and_revocable(registry, policy, old.digest, key.public_key_fingerprint)


@pytest.mark.parametrize("what", ["policy disabled", "key disabled"])
def test_a_forged_delete_restores_the_record_without_signing_again(
    what, client, policy, instance, webhook_token, registry, push_image_event, key
):
    pushed = push_image_event(tag="v1")
    before = sig_manifest(registry, REPOSITORY, pushed.digest).digest
    if what == "policy disabled":
        services.update_policy(policy=policy, disabled=True)
    else:
        kms_services.disable_key(key_id=str(key.key_id))

    deliver(client, instance, webhook_token, delete_event(REPOSITORY, pushed.digest))

    # The same artifact: restored from the registry, not signed again.
    assert sig_manifest(registry, REPOSITORY, pushed.digest).digest == before
    assert_restored_and_revocable(registry, policy, pushed.digest, key.public_key_fingerprint)


def test_a_forged_delete_after_a_key_change_restores_the_old_keys_record(
    client, policy, instance, webhook_token, registry, push_image_event, key
):
    pushed = push_image_event(tag="v1")
    services.update_policy(policy=policy, key=make_key("next-key"))  # not re-signed yet

    deliver(client, instance, webhook_token, delete_event(REPOSITORY, pushed.digest))

    assert_restored_and_revocable(registry, policy, pushed.digest, key.public_key_fingerprint)


def test_a_planted_layer_is_not_taken_for_signets_signature(
    client, policy, instance, webhook_token, registry, push_image_event, key
):
    """Someone with push rights replaces the .sig with a layer claiming Signet's key: a
    forged delete must not make Signet record it as its own."""
    pushed = push_image_event(tag="v1")
    planted = SignatureLayer(
        payload=build_payload(
            docker_reference=f"{policy.domain}/{REPOSITORY}", manifest_digest=pushed.digest
        ),
        signature_b64=base64.b64encode(b"\0" * 256).decode(),
        annotations=signing_annotations(key_fingerprint=key.public_key_fingerprint),
    )
    artifacts.publish(registry, REPOSITORY, pushed.digest, planted)

    deliver(client, instance, webhook_token, delete_event(REPOSITORY, pushed.digest))

    assert not Signature.objects.filter(manifest__digest=pushed.digest).exists()
    assert Manifest.objects.filter(digest=pushed.digest).exists()
