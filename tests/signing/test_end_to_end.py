"""The real path: a docker-registry notifies the live Signet, which signs in the background;
skopeo (sigstoreSigned policy) and cosign then verify what Signet wrote, with the key's
public key only.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from kms.models import Key
from registry import services as registry_services
from registry.client import RegistryClient
from registry.models import Instance, RegistryEvent
from signing import services
from signing.dispatch import wait_for_background_work
from signing.models import Signature, SignatureStatus, SigningPolicy, Trigger
from signing.payload import signature_tag
from signing.verification import verify_image
from tests.factories import make_key
from tests.signing.conftest import (
    CUSTOM_DOMAIN,
    DOMAIN,
    Verifiers,
    expected_payload,
    sig_layers,
    write_public_key,
)
from tests.support import live_signet
from tests.support.live_signet import signet_url
from tests.support.oci import push_image, push_index
from tests.support.registry_server import RegistryServer

pytestmark = [
    pytest.mark.registry_server,
    pytest.mark.django_db(transaction=True),
]

WAIT_SECONDS = 20.0


def wait_for(predicate: Callable[[], bool], what: str) -> None:
    live_signet.wait_for(predicate, what, seconds=WAIT_SECONDS)


def signed(digest: str) -> bool:
    return Signature.objects.filter(manifest__digest=digest, status=SignatureStatus.SIGNED).exists()


def wait_until_signed(*digests: str) -> None:
    for digest in digests:
        wait_for(functools.partial(signed, digest), f"the signature of {digest}")
    assert wait_for_background_work(timeout=WAIT_SECONDS)


@dataclass
class Live:
    instance: Instance
    server: RegistryServer
    client: RegistryClient
    verifiers: Verifiers
    key: Key


@pytest.fixture
def live(
    signet,
    settings,
    registry_server_factory,
    tmp_path,
    key,
    authorized,
    verifiers_available,
) -> Iterator[Live]:
    """An instance whose real registry posts its notifications to the live Signet.

    Signing runs in the background pool (``SIGNING_DISPATCH = "thread"``), as in
    production: the webhook answers before anything is signed. The registry's own address
    is a custom domain of the instance too, so a policy can sign for it.
    """
    settings.SIGNING_DISPATCH = "thread"
    instance, token = registry_services.create_instance(
        name="live",
        backend_url="http://127.0.0.1:9",
        default_domain=DOMAIN,
        custom_domains=[CUSTOM_DOMAIN],
    )
    server = registry_server_factory(
        notify_url=signet_url(signet) + registry_services.webhook_path(instance=instance),
        notify_token=token,
        extra_config={"notifications": {"events": {"includereferences": True}}},
    )
    instance = registry_services.update_instance(
        instance=instance, backend_url=server.url, custom_domains=[CUSTOM_DOMAIN, server.host]
    )
    namespace = registry_services.create_namespace(instance=instance, name="team")
    services.create_policy(namespace=namespace, name="team-policy", key=key)
    client = RegistryClient(server.url, backoff=0.05)
    yield Live(instance, server, client, Verifiers(tmp_path, server), key)
    wait_for_background_work(timeout=WAIT_SECONDS)
    client.close()


def test_a_real_push_is_signed_in_the_background_and_both_verifiers_accept_it(live, tmp_path):
    digest = push_image(live.client, "team/app", "v1", seed="e2e")

    wait_until_signed(digest)

    event = RegistryEvent.objects.get(tag="v1")
    assert (event.action, event.digest, event.status) == ("push", digest, "processed")
    row = Signature.objects.get(manifest__digest=digest)
    assert (row.trigger, row.key_id, row.docker_reference) == (
        Trigger.PUSH,
        live.key.key_id,
        f"{DOMAIN}/team/app",
    )
    [layer] = sig_layers(live.client, "team/app", digest)
    assert layer.payload == expected_payload(f"{DOMAIN}/team/app", digest)
    assert live.client.head_manifest("team/app", signature_tag(digest)).digest == (
        row.sig_manifest_digest
    )

    public_key = write_public_key(live.key, tmp_path / "policy-key.pub")
    skopeo = live.verifiers.skopeo("team/app:v1", public_key, identity=f"{DOMAIN}/team/app")
    assert skopeo.returncode == 0, skopeo.stderr
    assert (live.verifiers.copy_dir(1) / "manifest.json").is_file()
    cosign = live.verifiers.cosign("team/app:v1", public_key)
    assert cosign.returncode == 0, cosign.stderr
    [verified] = json.loads(cosign.stdout)
    assert verified["critical"]["image"]["docker-manifest-digest"] == digest
    assert verified["critical"]["identity"]["docker-reference"] == f"{DOMAIN}/team/app"
    assert verify_image(image=f"{DOMAIN}/team/app:v1").verified is True


def test_a_policy_on_the_registry_address_passes_skopeo_match_repository(live, tmp_path):
    other = make_key("local-signing")
    namespace = registry_services.create_namespace(instance=live.instance, name="local")
    services.create_policy(
        namespace=namespace, name="local-policy", key=other, domain=live.server.host
    )

    digest = push_image(live.client, "local/app", "v1", seed="local")
    wait_until_signed(digest)

    assert Signature.objects.get(manifest__digest=digest).docker_reference == (
        f"{live.server.host}/local/app"
    )
    public_key = write_public_key(other, tmp_path / "local.pub")
    skopeo = live.verifiers.skopeo("local/app:v1", public_key)  # matchRepository
    assert skopeo.returncode == 0, skopeo.stderr
    cosign = live.verifiers.cosign("local/app:v1", public_key)
    assert cosign.returncode == 0, cosign.stderr
    assert verify_image(image=f"{live.server.host}/local/app:v1").verified is True


def test_both_verifiers_reject_the_signature_under_another_key(live, tmp_path):
    digest = push_image(live.client, "team/app", "v1", seed="e2e")
    wait_until_signed(digest)
    stranger = write_public_key(make_key("stranger"), tmp_path / "stranger.pub")

    skopeo = live.verifiers.skopeo("team/app:v1", stranger, identity=f"{DOMAIN}/team/app")
    cosign = live.verifiers.cosign("team/app:v1", stranger)

    assert skopeo.returncode != 0
    assert "cryptographic signature verification failed" in skopeo.stderr
    assert not (live.verifiers.copy_dir(1) / "manifest.json").exists()
    assert cosign.returncode != 0
    assert "no matching signatures" in cosign.stderr


def test_both_verifiers_reject_an_image_pushed_outside_the_signed_namespace(live, tmp_path):
    signed_digest = push_image(live.client, "team/app", "v1", seed="signed")
    unsigned_digest = push_image(live.client, "plain/app", "v1", seed="unsigned")
    wait_until_signed(signed_digest)
    wait_for(lambda: RegistryEvent.objects.filter(digest=unsigned_digest).exists(), "the push")
    assert wait_for_background_work(timeout=WAIT_SECONDS)
    public_key = write_public_key(live.key, tmp_path / "policy-key.pub")

    assert not Signature.objects.filter(manifest__digest=unsigned_digest).exists()
    skopeo = live.verifiers.skopeo("plain/app:v1", public_key, identity=f"{DOMAIN}/plain/app")
    cosign = live.verifiers.cosign("plain/app:v1", public_key)

    assert skopeo.returncode != 0
    assert "no signature exists" in skopeo.stderr
    assert cosign.returncode != 0
    assert "no signatures found" in cosign.stderr


def test_skopeo_rejects_the_signature_under_another_identity(live, tmp_path):
    digest = push_image(live.client, "team/app", "v1", seed="e2e")
    wait_until_signed(digest)
    public_key = write_public_key(live.key, tmp_path / "policy-key.pub")

    skopeo = live.verifiers.skopeo("team/app:v1", public_key, identity=f"{CUSTOM_DOMAIN}/team/app")

    assert skopeo.returncode != 0
    assert f'Signature for identity \\"{DOMAIN}/team/app\\" is not accepted' in skopeo.stderr


def test_a_real_multi_arch_push_signs_the_index_and_the_platform_images(live, tmp_path):
    index_digest, children = push_index(live.client, "team/multi", "v1", seed="multi")

    wait_until_signed(index_digest, *children)

    assert Signature.objects.filter(status=SignatureStatus.SIGNED).count() == 3
    public_key = write_public_key(live.key, tmp_path / "policy-key.pub")
    # skopeo checks the platform image it selects (linux/amd64 here), cosign the index.
    skopeo = live.verifiers.skopeo("team/multi:v1", public_key, identity=f"{DOMAIN}/team/multi")
    assert skopeo.returncode == 0, skopeo.stderr
    cosign = live.verifiers.cosign("team/multi:v1", public_key)
    assert cosign.returncode == 0, cosign.stderr
    assert json.loads(cosign.stdout)[0]["critical"]["image"]["docker-manifest-digest"] == (
        index_digest
    )


def test_a_real_image_delete_removes_its_signature_artifact(live):
    digest = push_image(live.client, "team/app", "v1", seed="gone")
    wait_until_signed(digest)

    live.client.delete_manifest("team/app", digest)

    wait_for(
        lambda: RegistryEvent.objects.filter(action="delete", digest=digest).exists(),
        "the delete event",
    )
    assert wait_for_background_work(timeout=WAIT_SECONDS)
    wait_for(
        lambda: live.client.head_manifest("team/app", signature_tag(digest)) is None,
        "the .sig artifact to go",
    )
    assert not Signature.objects.exists()
    assert SigningPolicy.objects.count() == 1
