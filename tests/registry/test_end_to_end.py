"""A real docker-registry notifying a real Signet (pytest-django ``live_server``).

Images are pushed with ``RegistryClient``; the registry posts its events to the
webhook on its own schedule, so each test waits (bounded) for the records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from registry import services
from registry.client import OCI_INDEX, OCI_MANIFEST, RegistryClient
from registry.models import EventStatus, Instance, Manifest, RegistryEvent, Tag, TagHistory
from tests.registry.conftest import make_instance
from tests.support import live_signet
from tests.support.live_signet import signet_url
from tests.support.oci import build_image, push_image, push_index
from tests.support.registry_server import RegistryServer

pytestmark = [pytest.mark.registry_server, pytest.mark.django_db(transaction=True)]

WAIT_SECONDS = 10.0


def wait_for(predicate: Callable[[], bool], what: str) -> None:
    live_signet.wait_for(predicate, what, seconds=WAIT_SECONDS)


@dataclass
class Attached:
    instance: Instance
    server: RegistryServer
    client: RegistryClient


@pytest.fixture
def attached(signet, registry_server_factory) -> Iterator[Attached]:
    """An instance whose registry posts its notifications to the live Signet.

    The endpoint's config is the fixture's plus ``includereferences: true`` (as in the
    block Signet generates): without it Distribution 2.8 sends no index children.
    """
    instance, token = make_instance("prod")
    server = registry_server_factory(
        notify_url=signet_url(signet) + services.webhook_path(instance=instance),
        notify_token=token,
        extra_config={"notifications": {"events": {"includereferences": True}}},
    )
    instance = services.update_instance(instance=instance, backend_url=server.url)
    client = RegistryClient(server.url, backoff=0.05)
    yield Attached(instance=instance, server=server, client=client)
    client.close()


def test_a_real_push_by_tag_reaches_signet_through_the_webhook(attached):
    image = build_image(seed="web-1")
    digest = push_image(attached.client, "prod/web", "v1", seed="web-1")

    wait_for(lambda: Tag.objects.filter(name="v1").exists(), "the tag prod/web:v1")

    tag = Tag.objects.select_related("manifest", "repository__namespace").get()
    assert tag.repository.name == "prod/web"
    assert tag.repository.namespace.instance == attached.instance
    assert tag.manifest.digest == digest == image.digest
    assert tag.manifest.media_type == OCI_MANIFEST
    assert tag.manifest.size == len(image.manifest)
    event = RegistryEvent.objects.get(tag="v1")
    assert (event.action, event.status, event.digest) == ("push", EventStatus.PROCESSED, digest)


def test_a_real_index_push_records_the_index_and_its_children(attached):
    index_digest, children = push_index(attached.client, "prod/multi", "v2", seed="multi")

    wait_for(lambda: Tag.objects.filter(name="v2").exists(), "the index tag")
    wait_for(lambda: Manifest.objects.filter(digest__in=children).count() == 2, "both children")

    index = Manifest.objects.get(digest=index_digest)
    assert index.media_type == OCI_INDEX
    assert sorted(m.digest for m in index.children.all()) == sorted(children)
    assert Tag.objects.get(name="v2").manifest == index


def test_a_real_re_push_moves_the_tag(attached):
    old = push_image(attached.client, "prod/web", "latest", seed="old")
    wait_for(lambda: Tag.objects.filter(name="latest").exists(), "the first push")

    new = push_image(attached.client, "prod/web", "latest", seed="new")
    wait_for(lambda: Tag.objects.filter(name="latest", manifest__digest=new).exists(), "the move")

    history = list(
        TagHistory.objects.order_by("moved_at", "id").values_list("from_digest", "to_digest")
    )
    assert history == [("", old), (old, new)]


def test_a_real_delete_removes_the_manifest_and_its_tags(attached):
    digest = push_image(attached.client, "prod/web", "v1", seed="doomed")
    push_image(attached.client, "prod/web", "keep", seed="kept")
    wait_for(lambda: Tag.objects.count() == 2, "both tags")

    attached.client.delete_manifest("prod/web", digest)

    wait_for(lambda: not Manifest.objects.filter(digest=digest).exists(), "the delete")
    assert list(Tag.objects.values_list("name", flat=True)) == ["keep"]
    assert RegistryEvent.objects.filter(action="delete", digest=digest).exists()


def test_a_real_signature_push_is_ignored(attached):
    digest = push_image(attached.client, "prod/web", "v1", seed="signed")
    signature_tag = digest.replace("sha256:", "sha256-") + ".sig"

    push_image(attached.client, "prod/web", signature_tag, seed="signature")

    wait_for(lambda: RegistryEvent.objects.filter(tag=signature_tag).exists(), "the sig event")
    assert RegistryEvent.objects.get(tag=signature_tag).status == EventStatus.IGNORED
    assert list(Tag.objects.values_list("name", flat=True)) == ["v1"]
    assert Manifest.objects.count() == 1


class _YamlConfiguredRegistry(RegistryServer):
    """A registry whose config.yml is block YAML ending with Signet's generated block."""

    notifications_block = ""

    def _launch(self, port: int) -> bool:
        self.config_path.write_text(
            services.to_yaml(self.config(port)) + "\n" + self.notifications_block
        )
        return super()._launch(port)


def test_the_generated_notifications_block_works_in_a_real_registry(signet, tmp_path):
    instance, token = make_instance("prod")
    url = signet_url(signet) + services.webhook_path(instance=instance)
    server = _YamlConfiguredRegistry(workdir=tmp_path)
    server.notifications_block = services.notifications_config(
        instance=instance, token=token, webhook_url=url
    )
    with server, RegistryClient(server.url, backoff=0.05) as client:
        digest = push_image(client, "prod/app", "v1", seed="yaml")
        wait_for(lambda: Tag.objects.filter(name="v1").exists(), "the push")

    assert Tag.objects.get().manifest.digest == digest
    assert "notifications:" in server.config_path.read_text()
    # The block's filters hold: blob uploads never reached Signet.
    assert not RegistryEvent.objects.filter(media_type="application/octet-stream").exists()
