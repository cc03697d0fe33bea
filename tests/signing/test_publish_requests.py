"""How many requests signing an image costs, counted in a real registry's access log.

Signing a new image takes 7: GET the manifest by digest (its sha256 checked), GET the
``.sig`` tag (404: no signature yet), POST + PUT the payload blob, POST + PUT the config
blob, PUT the ``.sig`` manifest. No HEAD: blobs Signet has just made are uploaded without
asking, and the ``.sig`` is read with one GET. Distribution 2.8 ignores the body of a
single ``POST ...?digest=`` (answers 202), so POST + PUT is the fewest it accepts.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kms.models import Key
from registry import services as registry_services
from registry.client import RegistryClient
from registry.models import Instance, Manifest, Namespace
from registry.worker_clients import forget_worker_clients, worker_client
from signing import services
from signing.models import Signature, SignatureStatus, Trigger
from signing.services.requests import request_signing
from tests.signing.conftest import CUSTOM_DOMAIN, DOMAIN, envelope, push_event
from tests.support.oci import build_image, push_built_image
from tests.support.registry_server import RegistryServer

REPOSITORY = "team/app"
IMAGES = 3
_ACCESS_LINE = re.compile(rb'^127\.0\.0\.1 - - \[[^\]]+\] "(?P<method>[A-Z]+) (?P<path>\S+) ')


@pytest.fixture(scope="module")
def logged_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A registry of its own, with its access log on (one line per request)."""
    with RegistryServer(
        workdir=tmp_path_factory.mktemp("logged-registry"),
        extra_config={"log": {"accesslog": {"disabled": False}}},
    ) as server:
        yield server


@pytest.fixture
def instance_fields(logged_registry: RegistryServer) -> dict[str, Any]:
    return {
        "name": "signet",
        "backend_url": logged_registry.url,
        "default_domain": DOMAIN,
        "custom_domains": [CUSTOM_DOMAIN],
    }


@pytest.fixture(autouse=True)
def fresh_worker_clients() -> Iterator[None]:
    forget_worker_clients()
    yield
    forget_worker_clients()


def access_log(server: RegistryServer) -> list[tuple[str, str]]:
    """(method, path) of every request the registry has answered."""
    lines = Path(server.log_path).read_bytes().splitlines()
    return [
        (match["method"].decode(), match["path"].decode())
        for match in map(_ACCESS_LINE.match, lines)
        if match
    ]


def kind(method: str, path: str) -> str:
    """A request named by what it does: ``GET manifest``, ``POST upload``, ``PUT sig``..."""
    if "/blobs/uploads/" in path:
        return f"{method} upload"
    if "/blobs/" in path:
        return f"{method} blob"
    return f"{method} sig" if path.endswith(".sig") else f"{method} manifest"


def push_recorded(instance: Instance, server: RegistryServer, count: int) -> list[Manifest]:
    client = RegistryClient(server.url)
    digests = []
    for n in range(count):
        image = build_image(seed=f"requests-{n}-{instance.pk}")
        digest = push_built_image(client, REPOSITORY, image, f"v{n}")
        registry_services.record_events(
            instance=instance,
            envelope=envelope(
                push_event(REPOSITORY, digest, size=len(image.manifest), tag=f"v{n}")
            ),
        )
        digests.append(digest)
    client.close()
    return list(Manifest.objects.filter(digest__in=digests).select_related("repository"))


def test_signing_a_new_image_takes_seven_registry_requests_and_no_head(
    instance: Instance, namespace: Namespace, key: Key, authorized, logged_registry
):
    manifests = push_recorded(instance, logged_registry, IMAGES)
    services.create_policy(namespace=namespace, name="team-policy", key=key)
    before = len(access_log(logged_registry))

    result = request_signing(manifests=manifests, trigger=Trigger.BACKFILL)

    assert result.outcome.signed == IMAGES
    made = access_log(logged_registry)[before:]
    assert len(made) == 7 * IMAGES, made
    assert Counter(kind(*request) for request in made) == {
        "GET manifest": IMAGES,  # by digest, hashed before anything is signed
        "GET sig": IMAGES,  # 404: nothing to keep
        "POST upload": 2 * IMAGES,
        "PUT upload": 2 * IMAGES,
        "PUT sig": IMAGES,
    }
    for manifest in manifests:
        assert ("GET", f"/v2/{REPOSITORY}/manifests/{manifest.digest}") in made


def test_re_signing_with_a_new_key_reads_the_sig_once_and_uploads_only_the_new_config(
    instance: Instance, namespace: Namespace, key: Key, other_key: Key, authorized, logged_registry
):
    manifests = push_recorded(instance, logged_registry, 1)
    policy = services.create_policy(namespace=namespace, name="team-policy", key=key).policy
    request_signing(manifests=manifests, trigger=Trigger.BACKFILL)
    services.update_policy(policy=policy, key=other_key)
    before = len(access_log(logged_registry))

    result = services.resign_policy(policy=policy)

    assert result.outcome.signed == 1
    made = [kind(*request) for request in access_log(logged_registry)[before:]]
    # The old key's layer is dropped; its payload blob (the same bytes) is there already.
    assert Counter(made) == {
        "GET manifest": 1,
        "GET sig": 1,
        "GET blob": 1,
        "POST upload": 1,
        "PUT upload": 1,
        "PUT sig": 1,
    }
    row = Signature.objects.get(manifest=manifests[0])
    assert (row.status, row.key_id) == (SignatureStatus.SIGNED, other_key.key_id)


def test_a_worker_thread_keeps_one_client_per_instance_across_batches(
    instance: Instance, namespace: Namespace, key: Key, authorized, logged_registry
):
    manifests = push_recorded(instance, logged_registry, 2)
    services.create_policy(namespace=namespace, name="team-policy", key=key)
    request_signing(manifests=manifests[:1], trigger=Trigger.BACKFILL)
    first = worker_client(instance)
    request_signing(manifests=manifests[1:], trigger=Trigger.BACKFILL)

    assert worker_client(instance) is first
    assert first.session.trust_env is False
    assert Signature.objects.filter(status=SignatureStatus.SIGNED).count() == 2


def test_a_changed_registry_address_gets_a_new_client(instance: Instance, logged_registry):
    first = worker_client(instance)
    instance.backend_url = logged_registry.url + "/"
    instance.save()

    assert worker_client(instance) is not first
