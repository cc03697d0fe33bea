"""Instances, namespaces and the database's own rules."""

from __future__ import annotations

import hashlib

import pytest
from django.db import DataError, IntegrityError, transaction
from django.test import override_settings
from django.utils import timezone

from config.errors import ValidationFailed
from kms import crypto
from registry import services
from registry.errors import InvalidReference
from registry.models import (
    AuthType,
    Instance,
    InstanceDomain,
    Manifest,
    Namespace,
    Repository,
    Tag,
    TagHistory,
)
from registry.reference import (
    DIGEST_PATTERN,
    REPOSITORY_PATTERN,
    TAG_PATTERN,
    validate_digest,
    validate_repository_name,
    validate_tag,
)
from tests.registry import events as ev
from tests.registry.conftest import make_instance

pytestmark = pytest.mark.django_db


# --- instances ----------------------------------------------------------------------------


def test_it_creates_an_instance_with_a_token_it_stores_only_hashed():
    instance, token = make_instance("prod", custom_domains=["Pull.Example.com", "b.example:5000"])

    instance.refresh_from_db()
    assert len(token) >= 43  # 32 random bytes, url-safe base64
    assert instance.webhook_token_hash == hashlib.sha256(token.encode()).hexdigest()
    row_text = repr(Instance.objects.filter(pk=instance.pk).values().get())
    assert token not in row_text
    assert instance.region == "ap-guangzhou"
    assert instance.domain_names() == ["registry.example.com", "b.example:5000", "pull.example.com"]


def test_each_instance_gets_its_own_token():
    _, first = make_instance("one")
    _, second = make_instance("two")

    assert first != second


def test_it_authenticates_the_webhook_token_and_nothing_else():
    instance, token = make_instance()

    assert services.authenticate_webhook(instance=instance, token=token)
    assert not services.authenticate_webhook(instance=instance, token=token + "x")
    assert not services.authenticate_webhook(instance=instance, token="")
    assert not services.authenticate_webhook(instance=instance, token=None)


def test_rotating_the_token_invalidates_the_old_one():
    instance, old = make_instance()

    new = services.rotate_webhook_token(instance=instance)

    instance.refresh_from_db()
    assert new != old
    assert services.authenticate_webhook(instance=instance, token=new)
    assert not services.authenticate_webhook(instance=instance, token=old)
    assert instance.webhook_token_rotated_at is not None


def test_it_seals_the_registry_secret_and_binds_it_to_the_instance():
    instance, _ = make_instance(auth_type=AuthType.BASIC, username="robot", secret="pa55word!")
    other, _ = make_instance("other", auth_type=AuthType.BASIC, username="robot", secret="x")

    instance.refresh_from_db()
    assert b"pa55word!" not in bytes(instance.sealed_secret)
    assert instance.secret() == "pa55word!"
    assert instance.secret_master_key_version == 1
    # Sealed material copied onto another instance does not open there.
    other.sealed_secret = instance.sealed_secret
    with pytest.raises(services.InstanceMisconfigured) as error:
        other.secret()
    assert "pa55word" not in str(error.value)


def test_the_registry_client_gets_the_decrypted_credentials():
    instance, _ = make_instance(auth_type=AuthType.BASIC, username="robot", secret="pa55word!")
    bearer, _ = make_instance("bearer", auth_type=AuthType.BEARER, secret="tok-123")

    client = Instance.objects.get(pk=instance.pk).registry_client()
    assert (client.username, client._password, client.name) == ("robot", "pa55word!", "prod")
    assert client.base_url == "http://127.0.0.1:9"
    assert "pa55word" not in repr(client)
    assert Instance.objects.get(pk=bearer.pk).registry_client()._static_token == "tok-123"


def test_a_secret_can_come_from_the_environment(monkeypatch, caplog):
    monkeypatch.setenv("SIGNET_REGISTRY_ORIGIN_TEST_TOKEN", "http://127.0.0.1:9")
    instance, _ = make_instance(
        auth_type=AuthType.BEARER, secret_env="SIGNET_REGISTRY_SECRET_TEST_TOKEN"
    )
    assert instance.sealed_secret is None

    monkeypatch.setenv("SIGNET_REGISTRY_SECRET_TEST_TOKEN", "from-env")
    assert instance.registry_client()._static_token == "from-env"

    monkeypatch.delenv("SIGNET_REGISTRY_SECRET_TEST_TOKEN")
    with pytest.raises(services.InstanceMisconfigured) as error:
        instance.registry_client()
    assert "SIGNET_REGISTRY_SECRET_TEST_TOKEN" not in str(error.value)
    assert "SIGNET_REGISTRY_SECRET_TEST_TOKEN is not set" in caplog.text


@pytest.mark.parametrize(
    ("fields", "bad_field"),
    [
        ({"name": "Prod"}, "name"),
        ({"name": "p"}, "name"),
        ({"name": "prod_1"}, "name"),
        ({"name": "1prod"}, "name"),
        ({"region": "mars-1"}, "region"),
        ({"backend_url": "ftp://registry.example.com"}, "backend_url"),
        ({"backend_url": "not a url"}, "backend_url"),
        ({"default_domain": "bad domain"}, "default_domain"),
        ({"default_domain": "registry.example.com:99999"}, "default_domain"),
        ({"default_domain": ""}, "default_domain"),
        ({"custom_domains": ["ok.example", "-bad.example"]}, "custom_domains"),
        ({"custom_domains": ["registry.example.com"]}, "custom_domains"),
        ({"auth_type": "kerberos"}, "auth_type"),
        ({"auth_type": "none", "secret": "x"}, "auth_type"),
        ({"auth_type": "basic", "secret": "x"}, "username"),
        ({"auth_type": "basic", "username": "u"}, "secret"),
        ({"auth_type": "bearer", "secret": "x", "secret_env": "TOKEN"}, "secret"),
        ({"auth_type": "bearer", "secret_env": "1-not-a-name"}, "secret_env"),
    ],
)
def test_it_refuses_invalid_instance_fields(fields, bad_field):
    values = {"name": "prod", **fields}

    with pytest.raises(ValidationFailed) as error:
        make_instance(**values)

    assert bad_field in error.value.fields
    assert not Instance.objects.exists()


def test_instance_names_are_unique():
    make_instance("prod")

    with pytest.raises(services.InstanceExists):
        make_instance("prod")


def test_updating_keeps_replaces_or_removes_the_secret(monkeypatch):
    monkeypatch.setenv("SIGNET_REGISTRY_ORIGIN_REG", "http://127.0.0.1:9")
    instance, _ = make_instance(auth_type=AuthType.BASIC, username="u", secret="one")

    services.update_instance(instance=instance, description="kept")
    assert Instance.objects.get().secret() == "one"

    services.update_instance(instance=instance, secret="two")
    assert Instance.objects.get().secret() == "two"

    services.update_instance(instance=instance, secret_env="SIGNET_REGISTRY_SECRET_REG")
    updated = Instance.objects.get()
    assert (updated.sealed_secret, updated.secret_env) == (None, "SIGNET_REGISTRY_SECRET_REG")

    services.update_instance(instance=instance, auth_type=AuthType.NONE)
    cleared = Instance.objects.get()
    assert (cleared.username, cleared.sealed_secret, cleared.secret_env) == ("", None, "")


def test_updating_replaces_the_custom_domains():
    instance, _ = make_instance(custom_domains=["a.example", "b.example"])

    services.update_instance(instance=instance, custom_domains=["b.example", "c.example"])

    custom = InstanceDomain.objects.filter(is_default=False)
    assert sorted(custom.values_list("name", flat=True)) == ["b.example", "c.example"]


def test_an_instance_with_namespaces_cannot_be_deleted():
    instance, _ = make_instance()
    services.create_namespace(instance=instance, name="prod")

    with pytest.raises(services.InstanceInUse):
        services.delete_instance(instance=instance)
    assert Instance.objects.exists()


def test_an_empty_instance_is_deleted_with_its_domains_and_events():
    instance, _ = make_instance(custom_domains=["a.example"])
    services.record_events(
        instance=instance, envelope=ev.envelope(ev.sample_event("pull GET blob no-tag"))
    )

    services.delete_instance(instance=instance)

    assert not Instance.objects.exists()
    assert not InstanceDomain.objects.exists()


def test_it_reseals_secrets_after_a_master_key_rotation():
    instance, _ = make_instance(auth_type=AuthType.BEARER, secret="token-value")
    old = crypto.MasterKeyring.parse("1:dGVzdC1tYXN0ZXIta2V5LTAxMjM0NTY3ODlhYmNkZWY=")
    new_text = crypto.generate_master_key_text(2)
    rotated = f"{new_text},1:dGVzdC1tYXN0ZXIta2V5LTAxMjM0NTY3ODlhYmNkZWY="
    assert old.current == 1

    with override_settings(KMS_MASTER_KEY=rotated):
        assert services.reseal_instance_secrets() == 1
        assert services.reseal_instance_secrets() == 0
        resealed = Instance.objects.get(pk=instance.pk)
        assert resealed.secret_master_key_version == 2
        assert resealed.secret() == "token-value"


# --- the registry's notifications block -----------------------------------------------------


def test_the_notifications_block_names_the_url_token_and_filters():
    instance, token = make_instance()

    text = services.notifications_config(
        instance=instance,
        token=token,
        webhook_url="http://signet.example/api/v1/registry/instances/prod/events/",
    )

    assert text == (
        "notifications:\n"
        "  events:\n"
        "    includereferences: true\n"
        "  endpoints:\n"
        "    - name: signet-prod\n"
        "      url: http://signet.example/api/v1/registry/instances/prod/events/\n"
        "      headers:\n"
        "        Authorization:\n"
        f'          - "Bearer {token}"\n'
        "      timeout: 2s\n"
        "      threshold: 5\n"
        "      backoff: 1s\n"
        "      ignore:\n"
        "        mediatypes:\n"
        "          - application/octet-stream\n"
        "        actions:\n"
        "          - pull\n"
    )
    assert services.webhook_path(instance=instance) == "/api/v1/registry/instances/prod/events/"


# --- namespaces -----------------------------------------------------------------------------


def test_it_creates_namespaces_with_registry_naming_rules():
    instance, _ = make_instance()

    namespace = services.create_namespace(instance=instance, name="team-a.b_c", description="A")

    assert (namespace.instance, namespace.name, namespace.description) == (
        instance,
        "team-a.b_c",
        "A",
    )


@pytest.mark.parametrize("name", ["a", "Team", "-team", "team-", "te/am", "t" * 31, "te..am"])
def test_it_refuses_invalid_namespace_names(name):
    instance, _ = make_instance()

    with pytest.raises(ValidationFailed) as error:
        services.create_namespace(instance=instance, name=name)

    assert "name" in error.value.fields
    assert not Namespace.objects.exists()


def test_namespace_names_are_unique_per_instance_only():
    prod, _ = make_instance("prod")
    staging, _ = make_instance("staging")
    services.create_namespace(instance=prod, name="team")
    services.create_namespace(instance=staging, name="team")

    with pytest.raises(services.NamespaceExists):
        services.create_namespace(instance=prod, name="team")


@override_settings(REGISTRY_DELETE_HANDLERS=["tests.registry.handlers.record_delete"])
def test_deleting_a_namespace_removes_its_records_after_telling_the_delete_handlers(
    recorded_calls,
):
    instance, _ = make_instance()
    services.record_events(
        instance=instance,
        envelope=ev.envelope(
            ev.push("team/app", "v1", ev.digest_of("a")),
            ev.push("team/db", "v1", ev.digest_of("b")),
            ev.push("other/app", "v1", ev.digest_of("c")),
        ),
    )

    services.delete_namespace(namespace=Namespace.objects.get(name="team"))

    assert list(Repository.objects.values_list("name", flat=True)) == ["other/app"]
    assert list(Tag.objects.values_list("repository__name", flat=True)) == ["other/app"]
    assert recorded_calls[0]["source"] == "namespace-delete"
    assert sorted(recorded_calls[0]["digests"]) == sorted([ev.digest_of("a"), ev.digest_of("b")])
    assert recorded_calls[0]["still_recorded"] == 2


# --- rules the database enforces ----------------------------------------------------------------


@pytest.fixture
def repository():
    instance, _ = make_instance()
    namespace = services.create_namespace(instance=instance, name="prod")
    return Repository.objects.create(namespace=namespace, name="prod/app")


@pytest.mark.parametrize(
    "digest",
    ["sha256:" + "A" * 64, "sha256:" + "a" * 63, "md5:" + "a" * 64, "sha256:" + "a" * 64 + "\n"],
)
def test_the_database_refuses_a_malformed_manifest_digest(repository, digest):
    # PostgreSQL refuses the 72-character one by its column length (DataError) before the
    # CHECK constraint; SQLite, which ignores lengths, by the constraint (IntegrityError).
    with pytest.raises((IntegrityError, DataError)), transaction.atomic():
        Manifest.objects.create(
            repository=repository, digest=digest, media_type="x", pushed_at=timezone.now()
        )


def test_the_database_refuses_a_second_row_for_one_digest_in_a_repository(repository):
    digest = ev.digest_of("a")
    Manifest.objects.create(
        repository=repository, digest=digest, media_type="x", pushed_at=timezone.now()
    )

    with pytest.raises(IntegrityError), transaction.atomic():
        Manifest.objects.create(
            repository=repository, digest=digest, media_type="x", pushed_at=timezone.now()
        )


def test_the_database_refuses_bad_tags_and_repository_names(repository):
    manifest = Manifest.objects.create(
        repository=repository, digest=ev.digest_of("a"), media_type="x", pushed_at=timezone.now()
    )
    now = timezone.now()
    with pytest.raises(IntegrityError), transaction.atomic():
        Tag.objects.create(
            repository=repository, name=".hidden", manifest=manifest, pushed_at=now, updated_at=now
        )
    with pytest.raises(IntegrityError), transaction.atomic():
        Tag.objects.create(
            repository=repository,
            name="v1",
            manifest=manifest,
            pushed_at=now,
            updated_at=now - timezone.timedelta(seconds=1),
        )
    with pytest.raises(IntegrityError), transaction.atomic():
        Repository.objects.create(namespace=repository.namespace, name="noslash")
    with pytest.raises(IntegrityError), transaction.atomic():
        Namespace.objects.create(instance=repository.namespace.instance, name="X")
    tag = Tag.objects.create(
        repository=repository, name="v1", manifest=manifest, pushed_at=now, updated_at=now
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        TagHistory.objects.create(
            tag=tag, from_digest=manifest.digest, to_digest=manifest.digest, moved_at=now
        )


def test_a_namespace_protects_its_instance_from_deletion(repository):
    from django.db.models import ProtectedError

    with pytest.raises(ProtectedError):
        repository.namespace.instance.delete()
    assert Repository.objects.exists()


# --- our grammar and the client's agree ---------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "prod/app",
        "a/b/c",
        "a.b/c_d/e__f/g--h",
        "Prod/app",
        "prod/app/",
        "a//b",
        "a/-b",
        "a/b_",
        "a/" + "b" * 253,
        "a/b-c",
        "a/b---c",
        "a/b___c",
        "a/b._c",
    ],
)
def test_repository_names_follow_the_same_grammar_as_the_client(value):
    import re

    ours = bool(re.search(REPOSITORY_PATTERN, value))
    try:
        validate_repository_name(value)
        theirs = True
    except InvalidReference:
        theirs = False
    assert ours == theirs


@pytest.mark.parametrize("value", ["v1", "_x", "A.b-c", ".x", "-x", "x" * 128, "x" * 129, "a b"])
def test_tags_follow_the_same_grammar_as_the_client(value):
    import re

    ours = bool(re.search(TAG_PATTERN, value))
    try:
        validate_tag(value)
        theirs = True
    except InvalidReference:
        theirs = False
    assert ours == theirs


@pytest.mark.parametrize("value", [ev.digest_of("a"), "sha256:" + "A" * 64, "sha512:" + "a" * 128])
def test_digests_follow_the_same_grammar_as_the_client(value):
    import re

    ours = bool(re.search(DIGEST_PATTERN, value))
    try:
        validate_digest(value)
        theirs = True
    except InvalidReference:
        theirs = False
    assert ours == theirs
