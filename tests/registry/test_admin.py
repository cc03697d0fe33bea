"""The registry admin: token shown once, read-only records, constant-query changelists."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from accounts.models import Role
from registry import services
from registry.models import AuthType, Instance, Namespace, Repository, Tag
from tests.accounts.support import grant
from tests.factories import make_user
from tests.registry import events as ev
from tests.registry.conftest import make_instance

pytestmark = pytest.mark.django_db

ADMIN = "/admin/registry"


def _instance_form(**fields: str) -> dict[str, str]:
    return {
        "name": "prod",
        "region": "ap-guangzhou",
        "description": "",
        "backend_url": "http://127.0.0.1:5000",
        "auth_type": "basic",
        "username": "robot",
        "secret": "adm1n-secret",
        "secret_env": "",
        "default_domain": "registry.example.com",
        "custom_domains": "pull.example.com\n",
        "_save": "Save",
        **fields,
    }


def _token_on(page: str) -> str:
    match = re.search(r'<code id="webhook-token">([^<]+)</code>', page)
    assert match, "the token is not on the page"
    return match.group(1)


# --- instances ------------------------------------------------------------------------------


def test_adding_an_instance_shows_the_token_and_config_block_once(admin_client):
    response = admin_client.post(f"{ADMIN}/instance/add/", _instance_form())

    assert response.status_code == 200
    page = response.content.decode()
    token = _token_on(page)
    instance = Instance.objects.get(name="prod")
    assert services.authenticate_webhook(instance=instance, token=token)
    assert "http://testserver/api/v1/registry/instances/prod/events/" in page
    assert "notifications:" in page
    assert "Bearer " + token in page
    assert "application/octet-stream" in page
    assert "no-store" in response["Cache-Control"]
    assert instance.secret() == "adm1n-secret"
    assert instance.domain_names() == ["registry.example.com", "pull.example.com"]
    # The change page shows neither the token, its hash nor the secret.
    change = admin_client.get(f"{ADMIN}/instance/{instance.pk}/change/").content.decode()
    assert token not in change
    assert instance.webhook_token_hash not in change
    assert "adm1n-secret" not in change
    assert "stored (encrypted)" in admin_client.get(f"{ADMIN}/instance/").content.decode()


def test_the_admin_form_shows_the_services_validation_errors(admin_client):
    response = admin_client.post(
        f"{ADMIN}/instance/add/",
        _instance_form(
            default_domain="not a domain",
            username="",
        ),
    )

    assert response.status_code == 200
    assert not Instance.objects.exists()
    errors = response.context["adminform"].form.errors
    assert "default_domain" in errors
    assert "username" in errors


def test_changing_an_instance_keeps_the_secret_unless_a_new_one_is_given(admin_client):
    instance, _ = make_instance(
        auth_type=AuthType.BASIC,
        username="robot",
        secret="first",
        backend_url="http://127.0.0.1:5000",  # the form's: the secret stays with its origin
    )
    url = f"{ADMIN}/instance/{instance.pk}/change/"
    form = _instance_form(secret="", description="changed")
    form.pop("name")

    response = admin_client.post(url, form)

    assert response.status_code == 302
    instance.refresh_from_db()
    assert (instance.description, instance.secret()) == ("changed", "first")

    admin_client.post(url, {**form, "secret": "second"})
    instance.refresh_from_db()
    assert instance.secret() == "second"


def test_the_rotate_button_shows_a_new_token_once(admin_client):
    instance, old = make_instance()
    change = admin_client.get(f"{ADMIN}/instance/{instance.pk}/change/").content.decode()
    assert f"/admin/registry/instance/{instance.pk}/rotate-webhook-token/" in change

    response = admin_client.post(f"{ADMIN}/instance/{instance.pk}/rotate-webhook-token/")

    new = _token_on(response.content.decode())
    instance.refresh_from_db()
    assert services.authenticate_webhook(instance=instance, token=new)
    assert not services.authenticate_webhook(instance=instance, token=old)
    assert (
        admin_client.get(f"{ADMIN}/instance/{instance.pk}/rotate-webhook-token/").status_code == 405
    )


def test_rotating_needs_the_change_permission(db):
    instance, token = make_instance()
    viewer = Client()
    user = make_user(is_staff=True, perms=["registry.view_instance"])
    grant(user, instance, role=Role.READER)  # the instance is in its scope, read-only
    viewer.force_login(user)

    response = viewer.post(f"{ADMIN}/instance/{instance.pk}/rotate-webhook-token/")

    assert response.status_code == 403
    instance.refresh_from_db()
    assert services.authenticate_webhook(instance=instance, token=token)


def test_the_rotate_action_handles_exactly_one_instance(admin_client):
    first, first_token = make_instance("one")
    second, _ = make_instance("two")

    refused = admin_client.post(
        f"{ADMIN}/instance/",
        {
            "action": "rotate_webhook_token_action",
            "_selected_action": [first.pk, second.pk],
        },
        follow=True,
    )
    first.refresh_from_db()
    assert services.authenticate_webhook(instance=first, token=first_token)
    assert "Select exactly one instance" in refused.content.decode()

    response = admin_client.post(
        f"{ADMIN}/instance/",
        {
            "action": "rotate_webhook_token_action",
            "_selected_action": [first.pk],
        },
    )
    first.refresh_from_db()
    assert services.authenticate_webhook(instance=first, token=_token_on(response.content.decode()))


def test_an_instance_with_namespaces_cannot_be_deleted_in_the_admin(admin_client):
    instance, _ = make_instance()
    services.create_namespace(instance=instance, name="team")

    response = admin_client.post(f"{ADMIN}/instance/{instance.pk}/delete/", {"post": "yes"})

    assert response.status_code == 200  # the "protected objects" page
    assert "protected related objects" in response.content.decode()
    assert Instance.objects.exists()


# --- namespaces -----------------------------------------------------------------------------


def test_namespaces_are_created_and_deleted_through_the_services(admin_client):
    instance, _ = make_instance()

    added = admin_client.post(
        f"{ADMIN}/namespace/add/",
        {
            "instance": instance.pk,
            "name": "team",
            "description": "Team",
            "_save": "Save",
        },
    )
    bad = admin_client.post(
        f"{ADMIN}/namespace/add/",
        {
            "instance": instance.pk,
            "name": "Bad Name",
            "_save": "Save",
        },
    )
    namespace = Namespace.objects.get()
    services.record_events(
        instance=instance, envelope=ev.envelope(ev.push("team/app", "v1", ev.digest_of("a")))
    )
    deleted = admin_client.post(f"{ADMIN}/namespace/{namespace.pk}/delete/", {"post": "yes"})

    assert added.status_code == 302
    assert bad.status_code == 200
    assert deleted.status_code == 302
    assert not Namespace.objects.exists()
    assert not Repository.objects.exists()


# --- recorded objects -----------------------------------------------------------------------


def test_recorded_objects_cannot_be_added_or_edited(admin_client, instance):
    services.record_events(instance=instance, envelope=ev.sample_push())
    tag = Tag.objects.get()

    assert admin_client.get(f"{ADMIN}/tag/add/").status_code == 403
    view = admin_client.get(f"{ADMIN}/tag/{tag.pk}/change/")
    assert view.status_code == 200
    assert 'name="_save"' not in view.content.decode()
    admin_client.post(f"{ADMIN}/tag/{tag.pk}/change/", {"name": "changed"})
    assert Tag.objects.get().name == "v1.2.3"


def test_tags_show_a_short_digest_with_the_full_one_to_copy(admin_client, instance):
    services.record_events(instance=instance, envelope=ev.sample_push())
    digest = Tag.objects.get().manifest.digest

    page = admin_client.get(f"{ADMIN}/tag/").content.decode()

    assert f'<code title="{digest}">sha256:8008d244…</code>' in page
    assert f'data-copy="{digest}"' in page
    assert "navigator.clipboard.writeText" in page
    assert "prod-ns/web-app" in page


def test_tags_are_searched_and_filtered(admin_client, instance):
    other, _ = make_instance("staging")
    services.record_events(
        instance=instance,
        envelope=ev.envelope(
            ev.push("prod/web", "v1", ev.digest_of("a")),
            ev.push("team/api", "v2", ev.digest_of("b")),
        ),
    )
    services.record_events(
        instance=other,
        envelope=ev.envelope(
            ev.push("prod/web", "v3", ev.digest_of("c")),
        ),
    )
    team = Namespace.objects.get(name="team")

    def rows(query: str) -> list[str]:
        response = admin_client.get(f"{ADMIN}/tag/?{query}")
        assert response.status_code == 200
        return sorted(tag.name for tag in response.context["cl"].result_list)

    assert rows("q=team/api") == ["v2"]
    assert rows("q=v3") == ["v3"]
    assert rows(f"instance={instance.pk}") == ["v1", "v2"]
    assert rows(f"namespace={team.pk}") == ["v2"]
    assert rows(f"instance={other.pk}&namespace={team.pk}") == []


CHANGELISTS = ["instance", "namespace", "repository", "tag", "manifest", "registryevent"]


@pytest.mark.parametrize("model", CHANGELISTS)
def test_changelist_query_counts_do_not_grow_with_rows(admin_client, model):
    def queries_for(rows: int) -> tuple[int, int]:
        for i in range(rows if model in ("instance", "namespace") else 1):
            instance, _ = make_instance(f"r{rows}-{i}", custom_domains=[f"r{rows}-{i}.example"])
            pushes = [
                ev.push(f"ns{rows}-{i}/app{n}", "v1", ev.digest_of(f"{rows}-{i}-{n}"))
                for n in range(1 if model in ("instance", "namespace") else rows)
            ]
            services.record_events(instance=instance, envelope=ev.envelope(*pushes))
        with CaptureQueriesContext(connection) as captured:
            response = admin_client.get(f"{ADMIN}/{model}/")
        assert response.status_code == 200
        return len(captured.captured_queries), response.context["cl"].result_count

    few_queries, few_rows = queries_for(2)
    many_queries, many_rows = queries_for(20)
    assert many_rows > few_rows
    assert many_queries == few_queries
