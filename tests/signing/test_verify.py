"""verify_image: reads the .sig artifact from the real registry and checks it like a verifier."""

from __future__ import annotations

import base64

import pytest

from kms.services import operations
from registry import services as registry_services
from registry.errors import RegistryUnavailable
from signing import artifacts, services
from signing.errors import ImageNotFound, InvalidPolicy, NoSigningPolicy
from signing.payload import SignatureLayer, build_payload, signing_annotations
from signing.verification import parse_image, verify_image
from tests.signing.conftest import (
    CUSTOM_DOMAIN,
    DOMAIN,
    REPOSITORY,
    dead_url,
    point_instance_at,
)

pytestmark = [
    pytest.mark.registry_server,
    pytest.mark.django_db(transaction=True),
]


def test_a_signed_image_verifies_by_tag(policy, key, push_image_event):
    pushed = push_image_event(tag="v1")
    image = f"{DOMAIN}/{REPOSITORY}:v1"

    result = verify_image(image=image)

    assert result.as_dict() == {
        "image": image,
        "verified": True,
        "digest": pushed.digest,
        "docker_reference": f"{DOMAIN}/{REPOSITORY}",
        "key_id": str(key.key_id),
        "key_fingerprint": key.public_key_fingerprint,
        "reasons": ["Signature 1 verifies with key image-signing."],
    }


def test_a_signed_image_verifies_by_digest(policy, key, push_image_event):
    pushed = push_image_event(tag="v1")

    result = verify_image(image=f"{DOMAIN}/{REPOSITORY}@{pushed.digest}")

    assert (result.verified, result.digest, result.key_id) == (True, pushed.digest, str(key.key_id))


def test_a_signed_image_verifies_by_tag_and_digest_together(policy, push_image_event):
    pushed = push_image_event(tag="v1")

    result = verify_image(image=f"{DOMAIN}/{REPOSITORY}:v1@{pushed.digest}")

    assert (result.verified, result.digest) == (True, pushed.digest)


def test_a_tag_that_points_elsewhere_than_the_digest_given_fails(policy, push_image_event):
    first = push_image_event(tag="v1", seed="one")
    push_image_event(tag="v2", seed="two")

    result = verify_image(image=f"{DOMAIN}/{REPOSITORY}:v2@{first.digest}")

    assert result.verified is False
    assert result.reasons == [f"Tag v2 does not point at {first.digest}."]


def test_a_signed_index_and_its_children_verify(policy, push_index_event):
    pushed = push_index_event(tag="multi")

    assert verify_image(image=f"{DOMAIN}/{REPOSITORY}:multi").verified is True
    for child in pushed.children:
        assert verify_image(image=f"{DOMAIN}/{REPOSITORY}@{child}").verified is True


def test_a_signature_under_the_previous_key_does_not_verify_with_the_new_one(
    policy, key, other_key, push_image_event
):
    pushed = push_image_event(tag="v1")
    services.update_policy(policy=policy, key=other_key)  # no re-sign

    result = verify_image(image=f"{DOMAIN}/{REPOSITORY}:v1")

    assert result.verified is False
    assert (result.digest, result.key_id) == (pushed.digest, str(other_key.key_id))
    assert result.reasons == [
        "Signature 1: does not verify with key image-signing-2 (fingerprint "
        f"{other_key.public_key_fingerprint[:16]}…). It was made with the policy's earlier "
        f"key {key.alias}: re-sign the policy's images to move them to the current key."
    ]
    assert result.docker_reference == ""

    services.resign_policy(policy=policy)
    assert verify_image(image=f"{DOMAIN}/{REPOSITORY}:v1").verified is True


def test_verifying_through_another_domain_than_the_signed_one_fails(policy, push_image_event):
    push_image_event(tag="v1")

    result = verify_image(image=f"{CUSTOM_DOMAIN}/{REPOSITORY}:v1")

    assert result.verified is False
    assert result.reasons == [
        f"Signature 1: identity {DOMAIN}/{REPOSITORY} is not {CUSTOM_DOMAIN}/{REPOSITORY}."
    ]


def test_a_signature_whose_payload_names_another_digest_fails(
    policy, key, registry, push_image_event
):
    target = push_image_event(tag="v1", seed="target")
    other = push_image_event(tag="v2", seed="other")
    # A genuine signature by the policy key, but over the other image's digest, copied
    # beside the target image (a replayed signature).
    payload = build_payload(docker_reference=f"{DOMAIN}/{REPOSITORY}", manifest_digest=other.digest)
    signature = operations.sign(
        key_id=str(key.key_id), message=payload, algorithm="RSA_PKCS1_SHA_256"
    )
    layer = SignatureLayer(
        payload=payload,
        signature_b64=base64.b64encode(signature).decode(),
        annotations=signing_annotations(key_fingerprint=key.public_key_fingerprint),
    )
    artifacts.publish(registry, REPOSITORY, target.digest, layer)

    result = verify_image(image=f"{DOMAIN}/{REPOSITORY}:v1")

    assert result.verified is False
    assert result.reasons == [f"Signature 1: signs digest {other.digest}, not {target.digest}."]
    assert verify_image(image=f"{DOMAIN}/{REPOSITORY}:v2").verified is True


def test_an_unsigned_image_fails_with_no_signature(namespace, key, authorized, push_image_event):
    pushed = push_image_event(tag="v1")
    services.create_policy(namespace=namespace, name="late", key=key)

    result = verify_image(image=f"{DOMAIN}/{REPOSITORY}:v1")

    assert result.verified is False
    assert result.digest == pushed.digest
    assert result.reasons == [f"No signature exists for {REPOSITORY}@{pushed.digest}."]
    assert (result.key_id, result.key_fingerprint) == ("", "")


def test_one_good_signature_among_bad_ones_verifies(tmp_path, policy, registry, push_image_event):
    from tests.signing.conftest import Signer

    pushed = push_image_event(tag="v1")
    stranger = Signer.create(tmp_path / "stranger.pub")
    payload = build_payload(
        docker_reference=f"{DOMAIN}/{REPOSITORY}", manifest_digest=pushed.digest
    )
    artifacts.publish(registry, REPOSITORY, pushed.digest, stranger.sign(payload))

    result = verify_image(image=f"{DOMAIN}/{REPOSITORY}:v1")

    assert result.verified is True
    assert result.reasons == ["Signature 1 verifies with key image-signing."]


@pytest.mark.parametrize(
    "image",
    [
        "",
        "team/app:v1",  # no domain: "team" is read as the domain, leaving no namespace
        f"{DOMAIN}/app:v1",  # no namespace
        f"{DOMAIN}/{REPOSITORY}",  # neither tag nor digest
        f"{DOMAIN}/Team/App:v1",
        f"{DOMAIN}/{REPOSITORY}@sha256:abc",
        f"{DOMAIN}/{REPOSITORY}:-bad",
        f"{DOMAIN}/{REPOSITORY}:v1 extra",
        f"{DOMAIN}/team//app:v1",
        f"{DOMAIN}/team/app-:v1",
        f"{DOMAIN}/team/a..b:v1",
        f"{DOMAIN}/team/app/:v1",
        f"{DOMAIN}/nowhere/-app:v1",  # a namespace without a policy: still a malformed image
    ],
)
def test_a_malformed_image_reference_is_rejected(policy, image):
    with pytest.raises(InvalidPolicy) as excinfo:
        verify_image(image=image)

    error = excinfo.value
    assert (error.code, error.http_status) == ("InvalidImage", 400)
    assert list(error.fields) == ["image"]
    assert "<domain>/<namespace>/<repository>:<tag>" in error.message


def test_a_non_string_image_is_rejected() -> None:
    with pytest.raises(InvalidPolicy) as excinfo:
        parse_image(None)  # type: ignore[arg-type]  # the wrong type on purpose

    assert excinfo.value.code == "InvalidImage"


def test_an_unknown_domain_is_image_not_found(policy):
    with pytest.raises(ImageNotFound) as excinfo:
        verify_image(image=f"unknown.example.com/{REPOSITORY}:v1")

    assert (excinfo.value.code, excinfo.value.http_status) == ("ImageNotFound", 404)
    assert "unknown.example.com" in excinfo.value.message


def test_an_unknown_tag_is_image_not_found(policy, push_image_event):
    push_image_event(tag="v1")

    with pytest.raises(ImageNotFound) as excinfo:
        verify_image(image=f"{DOMAIN}/{REPOSITORY}:nope")

    assert f"{REPOSITORY}:nope is not in the registry" in excinfo.value.message


def test_an_instance_outside_the_allowed_ones_is_image_not_found(policy, instance):
    from registry.models import Instance

    with pytest.raises(ImageNotFound):
        verify_image(
            image=f"{DOMAIN}/{REPOSITORY}:v1", instances=Instance.objects.exclude(pk=instance.pk)
        )


def test_a_namespace_without_a_policy_cannot_be_verified(policy, push_image_event):
    push_image_event("other/app", tag="v1")

    with pytest.raises(NoSigningPolicy) as excinfo:
        verify_image(image=f"{DOMAIN}/other/app:v1")

    assert "Namespace other of instance signet has no signing policy" in excinfo.value.message


def test_an_unreachable_registry_is_reported_not_taken_for_a_bad_signature(
    policy, instance, push_image_event
):
    push_image_event(tag="v1")
    point_instance_at(instance, dead_url())

    with pytest.raises(RegistryUnavailable):
        verify_image(image=f"{DOMAIN}/{REPOSITORY}:v1")


def test_the_custom_domain_verifies_what_a_policy_on_that_domain_signed(
    namespace, key, authorized, push_image_event
):
    services.create_policy(namespace=namespace, name="custom", key=key, domain=CUSTOM_DOMAIN)
    push_image_event(tag="v1")

    assert verify_image(image=f"{CUSTOM_DOMAIN}/{REPOSITORY}:v1").verified is True
    assert verify_image(image=f"{DOMAIN}/{REPOSITORY}:v1").verified is False
    # Unused here, but the instance answers to both names.
    assert registry_services.get_instance(name="signet").domain_names() == [DOMAIN, CUSTOM_DOMAIN]


def test_a_sig_artifact_that_is_not_the_cosign_layout_is_reported_malformed(
    policy, registry, push_image_event
):
    import json

    from signing.payload import OCI_CONFIG_MEDIA_TYPE, OCI_MANIFEST_MEDIA_TYPE, signature_tag

    pushed = push_image_event(tag="v1")
    config = b"{}"
    blob = b"not a payload"
    config_digest = registry.upload_blob(REPOSITORY, config)
    blob_digest = registry.upload_blob(REPOSITORY, blob)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST_MEDIA_TYPE,
            "config": {"mediaType": OCI_CONFIG_MEDIA_TYPE, "size": 2, "digest": config_digest},
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "size": len(blob),
                    "digest": blob_digest,
                }
            ],
        }
    ).encode()
    registry.put_manifest(
        REPOSITORY, signature_tag(pushed.digest), manifest, OCI_MANIFEST_MEDIA_TYPE
    )

    result = verify_image(image=f"{DOMAIN}/{REPOSITORY}:v1")

    assert result.verified is False
    assert len(result.reasons) == 1
    assert result.reasons[0].startswith("The signature artifact is malformed: layer 0 media type")
