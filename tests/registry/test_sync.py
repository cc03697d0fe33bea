"""``manage.py sync_registry`` against a real docker-registry that already holds images."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from registry import services
from registry.client import OCI_INDEX, RegistryClient
from registry.models import AuthType, Manifest, Namespace, RegistryEvent, Repository, Tag
from tests.registry.conftest import db_snapshot, make_instance
from tests.support.oci import push_image, push_index
from tests.support.registry_server import free_port
from tests.support.token_server import TokenServer

pytestmark = [pytest.mark.registry_server, pytest.mark.django_db]


def sync(*args: str) -> str:
    out, err = StringIO(), StringIO()
    call_command("sync_registry", *args, stdout=out, stderr=err)
    return out.getvalue() + err.getvalue()


@pytest.fixture
def filled(registry_server, registry_client):
    """A registry with images pushed before Signet knew about it."""
    pushed = {
        "web-v1": push_image(registry_client, "prod/web", "v1", seed="web1"),
        "web-v2": push_image(registry_client, "prod/web", "v2", seed="web2"),
        "api": push_image(registry_client, "team/api", "latest", seed="api"),
        "deep": push_image(registry_client, "team/group/svc", "1.0", seed="deep"),
    }
    pushed["index"], pushed["children"] = push_index(
        registry_client, "prod/multi", "v1", seed="multi"
    )
    signature_tag = pushed["web-v1"].replace("sha256:", "sha256-") + ".sig"
    push_image(registry_client, "prod/web", signature_tag, seed="signature")
    push_image(registry_client, "loose", "3", seed="no-namespace")
    push_image(registry_client, "prod/untagged", None, seed="by-digest-only")
    make_instance("prod", backend_url=registry_server.url)
    return pushed


def test_it_imports_what_the_registry_already_holds(filled):
    output = sync("prod")

    assert sorted(Namespace.objects.values_list("name", flat=True)) == ["prod", "team"]
    assert sorted(Repository.objects.values_list("name", flat=True)) == [
        "prod/multi",
        "prod/web",
        "team/api",
        "team/group/svc",
    ]
    tags = {
        (tag.repository.name, tag.name): tag.manifest.digest
        for tag in Tag.objects.select_related("repository", "manifest")
    }
    assert tags == {
        ("prod/web", "v1"): filled["web-v1"],
        ("prod/web", "v2"): filled["web-v2"],
        ("team/api", "latest"): filled["api"],
        ("team/group/svc", "1.0"): filled["deep"],
        ("prod/multi", "v1"): filled["index"],
    }
    index = Manifest.objects.get(digest=filled["index"])
    assert index.media_type == OCI_INDEX
    assert sorted(m.digest for m in index.children.all()) == sorted(filled["children"])
    assert sorted(index.child_references.values_list("platform", flat=True)) == [
        "linux/amd64",
        "linux/arm64",
    ]
    assert "prod/web: 2 tag(s), 2 created" in output
    assert "skip loose: not inside a valid namespace" in output
    assert (
        "Repositories: 5 seen, 4 created, 1 skipped. Tags: 5 created, 0 updated, 0 unchanged, "
        "1 signature tags ignored. Manifests created: 7. Errors: 0." in output
    )


def test_a_second_run_changes_nothing(filled):
    sync("prod")
    before = db_snapshot()

    output = sync("prod")

    assert db_snapshot() == before
    assert "Tags: 0 created, 0 updated, 5 unchanged" in output
    assert "Manifests created: 0" in output


def test_it_moves_tags_that_point_elsewhere_now(filled, registry_client):
    sync("prod")
    moved = push_image(registry_client, "prod/web", "v1", seed="web1-rebuilt")

    output = sync("prod")

    assert Tag.objects.get(repository__name="prod/web", name="v1").manifest.digest == moved
    history = Tag.objects.get(repository__name="prod/web", name="v1").history.order_by("id")
    assert [(h.from_digest, h.to_digest) for h in history] == [
        ("", filled["web-v1"]),
        (filled["web-v1"], moved),
    ]
    assert "Tags: 0 created, 1 updated, 4 unchanged" in output


def test_it_agrees_with_what_the_webhook_recorded(filled):
    from tests.registry import events as ev

    instance = services.get_instance(name="prod")
    services.record_events(
        instance=instance,
        envelope=ev.envelope(
            ev.push("prod/web", "v1", filled["web-v1"]),
        ),
    )

    output = sync("prod")

    assert Tag.objects.filter(repository__name="prod/web", name="v1").count() == 1
    assert "Tags: 4 created, 0 updated, 1 unchanged" in output


def test_it_can_sync_one_namespace(filled):
    sync("prod", "--namespace", "team")

    assert sorted(Repository.objects.values_list("name", flat=True)) == [
        "team/api",
        "team/group/svc",
    ]


def test_a_dry_run_reports_without_writing(filled):
    before = db_snapshot()

    output = sync("prod", "--dry-run")

    assert db_snapshot() == before
    assert "Dry run, nothing written." in output
    assert "Tags: 5 created" in output


@override_settings(REGISTRY_PUSH_HANDLERS=["tests.registry.handlers.record_push"])
def test_push_handlers_hear_about_imports_as_sync(filled, recorded_calls):
    sync("prod")

    assert recorded_calls
    assert {call["source"] for call in recorded_calls} == {"sync"}
    assert all(call["in_atomic_block"] for call in recorded_calls)
    synced_tags = sorted(tag for call in recorded_calls for tag in call["tags"])
    assert len(synced_tags) == 5


def test_it_fails_for_an_unknown_instance(db):
    with pytest.raises(CommandError, match="No registry instance named 'nope'"):
        sync("nope")


def test_it_fails_naming_the_registry_when_it_is_unreachable(db):
    url = f"http://127.0.0.1:{free_port()}"
    make_instance("prod", backend_url=url)

    with pytest.raises(CommandError) as error:
        sync("prod")

    assert "prod" in str(error.value)
    assert url in str(error.value)
    assert not Repository.objects.exists()


def test_it_fails_for_an_invalid_namespace_option(filled):
    with pytest.raises(CommandError, match="namespace"):
        sync("prod", "--namespace", "Not/Valid")


def test_it_syncs_through_token_auth_with_the_stored_credentials(
    registry_server_factory, tmp_path, settings
):
    with TokenServer(workdir=tmp_path, users={"robot": "s3cret-pw"}) as tokens:
        settings.REGISTRY_TOKEN_REALM_ALLOWED_ORIGINS = [tokens.origin]  # a plain-http realm
        server = registry_server_factory(auth=tokens.registry_auth_config())
        with RegistryClient(
            server.url,
            username="robot",
            password="s3cret-pw",
            allowed_realm_origins=[tokens.origin],
        ) as client:
            digest = push_image(client, "prod/secured", "v1", seed="secured")
        make_instance(
            "prod",
            backend_url=server.url,
            auth_type=AuthType.BASIC,
            username="robot",
            secret="s3cret-pw",
        )
        tokens.requests.clear()

        output = sync("prod")

        assert Tag.objects.get(name="v1").manifest.digest == digest
        assert "s3cret-pw" not in output
        assert {request.user for request in tokens.requests} == {"robot"}
        assert not RegistryEvent.objects.exists()  # a sync records no events
