"""``manage.py push_demo_image`` (issue 12, point 9) against a real docker-registry: it
refuses an unknown namespace instead of creating it on the push, says at once when
nothing will sign the image, documents every option, and reports the signature the
registry's notification starts (live Signet)."""

from __future__ import annotations

import time
from io import StringIO

import pytest
from django.core.management import call_command, load_command_class
from django.core.management.base import CommandError

from kms import services as kms_services
from registry import services as registry_services
from registry.client import RegistryClient
from registry.models import Namespace
from signing import services
from signing.dispatch import wait_for_background_work
from tests.signing.conftest import DOMAIN
from tests.support.live_signet import signet_url

pytestmark = pytest.mark.django_db


def push(*args: str) -> tuple[str, float]:
    out = StringIO()
    started = time.monotonic()
    call_command("push_demo_image", "--instance", "signet", *args, stdout=out)
    return out.getvalue(), time.monotonic() - started


def test_an_unknown_namespace_is_refused_and_nothing_is_pushed(instance, registry):
    with pytest.raises(CommandError) as refused:
        push("--repository", "nowhere/app", "--wait", "1")

    assert "Namespace 'nowhere' does not exist in instance signet" in str(refused.value)
    assert "--create-namespace" in str(refused.value)
    assert not Namespace.objects.filter(name="nowhere").exists()
    assert list(registry.catalog()) == []


def test_create_namespace_creates_it_then_pushes(instance, registry):
    out, _ = push("--repository", "fresh/app", "--create-namespace")

    assert Namespace.objects.filter(instance=instance, name="fresh").exists()
    assert registry.head_manifest("fresh/app", "v1") is not None
    assert "Created namespace fresh in instance signet." in out


def test_a_namespace_without_a_policy_is_reported_at_once(instance, namespace, registry):
    out, seconds = push("--repository", "team/app", "--tag", "v7", "--wait", "20")

    assert registry.head_manifest("team/app", "v7") is not None
    assert f"Pushed {DOMAIN}/team/app:v7 (sha256:" in out
    assert "not signed: namespace team has no signing policy" in out
    assert seconds < 10  # no wait for a signature nothing will make


def test_a_disabled_policy_is_reported_at_once(instance, namespace, key, authorized, registry):
    services.create_policy(namespace=namespace, name="team-policy", key=key, disabled=True)

    out, seconds = push("--repository", "team/app", "--wait", "20")

    assert "not signed: the signing policy team-policy of namespace team is disabled" in out
    assert seconds < 10


def test_a_disabled_key_is_an_error_named_at_once(instance, policy, key, registry):
    kms_services.disable_key(key_id=str(key.key_id))
    started = time.monotonic()

    with pytest.raises(CommandError) as failed:
        push("--repository", "team/app", "--wait", "20")

    assert f"not signed: Key {key.alias} is Disabled" in str(failed.value)
    assert time.monotonic() - started < 10


def test_an_invalid_repository_is_refused_before_pushing(instance, registry):
    with pytest.raises(CommandError) as refused:
        push("--repository", "App")

    assert "invalid repository name" in str(refused.value)
    assert list(registry.catalog()) == []


def test_every_option_has_help():
    parser = load_command_class("signing", "push_demo_image").create_parser(
        "manage.py", "push_demo_image"
    )
    ours = [
        action
        for action in parser._actions
        if any(o in action.option_strings for o in ("--instance", "--repository", "--tag"))
        or any(o in action.option_strings for o in ("--seed", "--wait", "--create-namespace"))
    ]

    assert len(ours) == 6
    assert all(action.help and len(action.help) > 15 for action in ours)


@pytest.mark.django_db(transaction=True)
def test_a_push_into_a_namespace_with_a_policy_waits_for_its_signature(
    signet, settings, registry_server_factory, key, authorized
):
    settings.SIGNING_DISPATCH = "thread"
    instance, token = registry_services.create_instance(
        name="signet", backend_url="http://127.0.0.1:9", default_domain=DOMAIN
    )
    server = registry_server_factory(
        notify_url=signet_url(signet) + registry_services.webhook_path(instance=instance),
        notify_token=token,
    )
    registry_services.update_instance(instance=instance, backend_url=server.url)
    namespace = registry_services.create_namespace(instance=instance, name="team")
    services.create_policy(namespace=namespace, name="team-policy", key=key)

    out, _ = push("--repository", "team/app", "--wait", "20")

    assert f"Signed {DOMAIN}/team/app:v1 with key {key.alias}" in out
    assert wait_for_background_work(timeout=20)
    client = RegistryClient(server.url)
    assert client.head_manifest("team/app", "v1") is not None
    client.close()
