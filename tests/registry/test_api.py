"""The registry REST API under /api/v1/registry/."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from registry import services
from registry.models import AuthType, Instance, Namespace, Repository, Tag
from tests.registry import events as ev
from tests.registry.conftest import make_instance

pytestmark = pytest.mark.django_db

API = "/api/v1/registry"
LISTS = ["instances", "namespaces", "repositories", "tags", "manifests"]
VIEW_PERMS = {
    "instances": "registry.view_instance",
    "namespaces": "registry.view_namespace",
    "repositories": "registry.view_repository",
    "tags": "registry.view_tag",
    "manifests": "registry.view_manifest",
}


def fill(instance, count: int, *, namespace: str = "prod") -> None:
    """``count`` repositories with one tag each, plus an index with two children."""
    pushes = [
        ev.push(f"{namespace}/app{i}", "v1", ev.digest_of(f"{namespace}{i}")) for i in range(count)
    ]
    amd, arm = ev.digest_of(f"{namespace}-amd"), ev.digest_of(f"{namespace}-arm")
    pushes += [
        ev.push(f"{namespace}/multi", None, amd),
        ev.push(f"{namespace}/multi", None, arm),
        ev.push_index(f"{namespace}/multi", "v1", ev.digest_of(f"{namespace}-idx"), [amd, arm]),
    ]
    services.record_events(instance=instance, envelope=ev.envelope(*pushes))


# --- permissions ----------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", LISTS)
def test_anonymous_requests_get_401(client, endpoint):
    response = client.get(f"{API}/{endpoint}/")

    assert response.status_code == 401
    assert response.json()["code"] == "AuthFailure"


@pytest.mark.parametrize("endpoint", LISTS)
def test_users_without_the_view_permission_get_403(client_with, endpoint):
    response = client_with("kms.view_key").get(f"{API}/{endpoint}/")

    assert response.status_code == 403
    assert VIEW_PERMS[endpoint] in response.json()["message"]


@pytest.mark.parametrize("endpoint", LISTS)
def test_users_with_the_view_permission_can_list(client_with, instance, endpoint):
    fill(instance, 1)

    response = client_with(VIEW_PERMS[endpoint], member_of=instance).get(f"{API}/{endpoint}/")

    assert response.status_code == 200
    assert response.json()["count"] >= 1


def test_viewing_does_not_allow_writing(client_with, instance):
    viewer = client_with("registry.view_instance", "registry.view_namespace")

    assert viewer.post(f"{API}/instances/", {}, format="json").status_code == 403
    assert viewer.post(f"{API}/instances/{instance.pk}/rotate-webhook-token/").status_code == 403
    assert viewer.delete(f"{API}/instances/{instance.pk}/").status_code == 403
    assert viewer.post(f"{API}/namespaces/", {}, format="json").status_code == 403
    assert Instance.objects.count() == 1


def test_recorded_objects_are_read_only(superuser_client, instance):
    fill(instance, 1)
    tag = Tag.objects.first()

    assert superuser_client.delete(f"{API}/tags/{tag.pk}/").status_code == 405
    assert superuser_client.post(f"{API}/repositories/", {}, format="json").status_code == 405
    assert Tag.objects.filter(pk=tag.pk).exists()


# --- instances ------------------------------------------------------------------------------


def test_creating_an_instance_returns_the_webhook_token_once(client_with):
    api = client_with("registry.add_instance", "registry.view_instance")

    response = api.post(
        f"{API}/instances/",
        {
            "name": "prod",
            "backend_url": "http://127.0.0.1:5000/",
            "default_domain": "reg.example",
            "auth_type": "basic",
            "username": "robot",
            "secret": "pa55-secret",
            "custom_domains": ["pull.example"],
        },
        format="json",
    )

    assert response.status_code == 201
    body = response.json()
    token = body["webhook_token"]
    instance = Instance.objects.get(name="prod")
    assert services.authenticate_webhook(instance=instance, token=token)
    assert body["webhook_url"] == "http://testserver/api/v1/registry/instances/prod/events/"
    assert f'"Bearer {token}"' in body["notifications_config"]
    assert body["backend_url"] == "http://127.0.0.1:5000"
    assert body["domain_names"] == ["reg.example", "pull.example"]
    assert body["has_secret"] is True
    assert "secret" not in body
    assert "pa55-secret" not in response.content.decode()
    assert instance.secret() == "pa55-secret"
    # Never again: neither the token nor the secret appears in later reads.
    for url in (f"{API}/instances/", f"{API}/instances/{instance.pk}/"):
        text = api.get(url).content.decode()
        assert token not in text
        assert "pa55-secret" not in text
        assert instance.webhook_token_hash not in text


def test_creating_an_invalid_instance_answers_400_with_fields(superuser_client):
    response = superuser_client.post(
        f"{API}/instances/",
        {
            "name": "Bad_Name",
            "backend_url": "http://127.0.0.1:5000",
            "default_domain": "x y",
        },
        format="json",
    )

    assert response.status_code == 400
    assert {"name", "default_domain"} <= response.json()["fields"].keys()
    assert not Instance.objects.exists()


def test_creating_a_duplicate_instance_answers_409(superuser_client, instance):
    response = superuser_client.post(
        f"{API}/instances/",
        {
            "name": instance.name,
            "backend_url": "http://127.0.0.1:5000",
            "default_domain": "reg.example",
        },
        format="json",
    )

    assert response.status_code == 409
    assert response.json()["code"] == "ResourceInUse.InstanceExists"


def test_rotating_returns_a_new_token_once(superuser_client, instance, webhook_token):
    response = superuser_client.post(f"{API}/instances/{instance.pk}/rotate-webhook-token/")

    assert response.status_code == 200
    new_token = response.json()["webhook_token"]
    instance.refresh_from_db()
    assert services.authenticate_webhook(instance=instance, token=new_token)
    assert not services.authenticate_webhook(instance=instance, token=webhook_token)
    assert new_token in response.json()["notifications_config"]


def test_updating_an_instance_keeps_its_name(superuser_client, instance):
    url = f"{API}/instances/{instance.pk}/"

    renamed = superuser_client.patch(url, {"name": "other"}, format="json")
    updated = superuser_client.patch(
        url,
        {
            "description": "Main registry",
            "auth_type": "bearer",
            "secret": "tok",
        },
        format="json",
    )

    assert renamed.status_code == 400
    assert "name" in renamed.json()["fields"]
    assert updated.status_code == 200
    assert updated.json()["description"] == "Main registry"
    assert updated.json()["has_secret"] is True
    instance.refresh_from_db()
    assert (instance.name, instance.auth_type, instance.secret()) == (
        "prod",
        AuthType.BEARER,
        "tok",
    )


def test_deleting_an_instance_in_use_answers_409(superuser_client, instance):
    fill(instance, 1)

    response = superuser_client.delete(f"{API}/instances/{instance.pk}/")

    assert response.status_code == 409
    assert response.json()["code"] == "ResourceInUse.Instance"
    assert Instance.objects.exists()


def test_deleting_an_empty_instance(superuser_client, instance):
    response = superuser_client.delete(f"{API}/instances/{instance.pk}/")

    assert response.status_code == 204
    assert not Instance.objects.exists()


def test_an_unknown_instance_answers_404(superuser_client, db):
    for url in (f"{API}/instances/999/", f"{API}/instances/abc/"):
        response = superuser_client.get(url)
        assert response.status_code == 404
        assert response.json()["code"] == "ResourceNotFound"


# --- namespaces -----------------------------------------------------------------------------


def test_creating_updating_and_deleting_a_namespace(client_with, instance):
    api = client_with(
        "registry.add_namespace",
        "registry.change_namespace",
        "registry.delete_namespace",
        member_of=instance,
    )

    created = api.post(
        f"{API}/namespaces/", {"instance": instance.pk, "name": "team"}, format="json"
    )
    namespace_id = created.json()["id"]
    changed = api.patch(
        f"{API}/namespaces/{namespace_id}/", {"description": "Team A"}, format="json"
    )
    renamed = api.patch(
        f"{API}/namespaces/{namespace_id}/", {"description": "x", "name": "b"}, format="json"
    )
    fill(instance, 1, namespace="team")
    deleted = api.delete(f"{API}/namespaces/{namespace_id}/")

    assert created.status_code == 201
    assert created.json()["instance_name"] == "prod"
    assert changed.status_code == 200
    assert changed.json()["description"] == "Team A"
    assert renamed.status_code == 400
    assert deleted.status_code == 204
    assert not Namespace.objects.exists()
    assert not Repository.objects.exists()


@pytest.mark.parametrize(
    ("payload", "status", "field"),
    [
        ({"name": "Bad"}, 400, "name"),
        ({"name": "ok", "instance": 999}, 400, "instance"),
        ({"instance": "x", "name": "ok"}, 400, "instance"),
    ],
)
def test_creating_an_invalid_namespace_answers_400(
    superuser_client, instance, payload, status, field
):
    response = superuser_client.post(
        f"{API}/namespaces/", {"instance": instance.pk, **payload}, format="json"
    )

    assert response.status_code == status
    assert field in response.json()["fields"]
    assert not Namespace.objects.exists()


def test_creating_a_duplicate_namespace_answers_409(superuser_client, instance):
    services.create_namespace(instance=instance, name="team")

    response = superuser_client.post(
        f"{API}/namespaces/", {"instance": instance.pk, "name": "team"}, format="json"
    )

    assert response.status_code == 409
    assert Namespace.objects.count() == 1


# --- filters and representations -------------------------------------------------------------


def test_tags_are_represented_with_their_place_and_digest(superuser_client, instance):
    services.record_events(instance=instance, envelope=ev.sample_push())

    body = superuser_client.get(f"{API}/tags/").json()

    tag = Tag.objects.get()
    assert body["results"] == [
        {
            "id": tag.pk,
            "instance": instance.pk,
            "instance_name": "prod",
            "namespace": tag.repository.namespace_id,
            "namespace_name": "prod-ns",
            "repository": tag.repository_id,
            "repository_name": "prod-ns/web-app",
            "name": "v1.2.3",
            "digest": "sha256:8008d244da857ce428566420c62f74f550377b4a40581ba3cae1245de04242cd",
            "media_type": "application/vnd.oci.image.manifest.v1+json",
            "size": 401,
            "pushed_at": "2026-11-28T13:29:26.077299Z",
            "updated_at": "2026-11-28T13:29:26.077299Z",
        }
    ]


def test_lists_filter_by_instance_namespace_repository_and_name(superuser_client, instance):
    other, _ = make_instance("staging")
    fill(instance, 2)
    fill(instance, 1, namespace="team")
    fill(other, 1)
    team = Namespace.objects.get(instance=instance, name="team")
    repository = Repository.objects.get(namespace__instance=instance, name="prod/app1")

    def names(url: str) -> list[str]:
        response = superuser_client.get(url)
        assert response.status_code == 200, response.content
        return sorted(
            row.get("repository_name") or row["name"] for row in response.json()["results"]
        )

    assert names(f"{API}/namespaces/?instance={instance.pk}") == ["prod", "team"]
    assert names(f"{API}/repositories/?namespace={team.pk}") == ["team/app0", "team/multi"]
    assert names(f"{API}/repositories/?instance={other.pk}") == ["prod/app0", "prod/multi"]
    assert names(f"{API}/tags/?repository={repository.pk}") == ["prod/app1"]
    assert names(f"{API}/tags/?instance={instance.pk}&namespace={team.pk}") == [
        "team/app0",
        "team/multi",
    ]
    assert len(names(f"{API}/tags/?name=v1")) == 7
    assert names(f"{API}/tags/?search=nothing") == []
    assert names(f"{API}/tags/?digest={ev.digest_of('prod1')}") == ["prod/app1"]
    assert names(f"{API}/manifests/?digest={ev.digest_of('team0')}") == ["team/app0"]
    assert len(names(f"{API}/manifests/?repository={repository.pk}")) == 1


def test_manifests_list_their_tags_and_index_children(superuser_client, instance):
    fill(instance, 0)

    body = superuser_client.get(f"{API}/manifests/?digest={ev.digest_of('prod-idx')}").json()

    manifest = body["results"][0]
    assert manifest["is_index"] is True
    assert manifest["tags"] == ["v1"]
    assert [child["digest"] for child in manifest["children"]] == [
        ev.digest_of("prod-amd"),
        ev.digest_of("prod-arm"),
    ]
    assert all(child["manifest"] for child in manifest["children"])


def test_a_non_numeric_filter_answers_400(superuser_client, db):
    response = superuser_client.get(f"{API}/tags/?instance=prod")

    assert response.status_code == 400
    assert "instance" in response.json()["fields"]


def test_lists_paginate(superuser_client, instance):
    fill(instance, 5)

    body = superuser_client.get(f"{API}/tags/?limit=2&offset=2").json()

    assert body["count"] == 6
    assert len(body["results"]) == 2
    assert "offset=4" in body["next"]


@pytest.mark.parametrize("endpoint", LISTS)
def test_list_query_counts_do_not_grow_with_rows(superuser_client, endpoint):
    def queries_for(rows: int) -> tuple[int, int]:
        prefix = f"r{rows}"
        for i in range(rows if endpoint == "instances" else 1):
            instance, _ = make_instance(f"{prefix}-{i}", custom_domains=[f"{prefix}-{i}.example"])
            services.create_namespace(instance=instance, name=f"{prefix}-extra")
            if endpoint == "namespaces":
                for n in range(rows):
                    fill(instance, 1, namespace=f"{prefix}-ns{n}")
            elif endpoint != "instances":
                fill(instance, rows, namespace=prefix)
        query = "" if endpoint == "instances" else f"?instance={instance.pk}"
        with CaptureQueriesContext(connection) as captured:
            response = superuser_client.get(f"{API}/{endpoint}/{query}")
        assert response.status_code == 200
        return len(captured.captured_queries), len(response.json()["results"])

    few_queries, few_rows = queries_for(2)
    many_queries, many_rows = queries_for(20)
    assert many_rows > few_rows
    assert many_queries == few_queries
