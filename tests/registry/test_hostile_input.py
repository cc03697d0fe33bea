"""Input that once reached the database or Python's int/datetime limits answers 4xx, not 500."""

from __future__ import annotations

import pytest

from registry.models import RegistryEvent

pytestmark = pytest.mark.django_db

DIGEST = "sha256:" + "a" * 64


def _push(**target):
    return {
        "events": [
            {
                "id": "ev-1",
                "timestamp": "2026-11-28T13:29:26Z",
                "action": "push",
                "target": {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "size": 10,
                    "digest": DIGEST,
                    "repository": "prod/app",
                    "tag": "v1",
                    **target,
                },
            }
        ]
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_push(size=10**30), "events[0].target.size"),
        (
            {"events": [{**_push()["events"][0], "timestamp": "0001-01-01T00:00:00+05:00"}]},
            "events[0].timestamp",
        ),
        ({"events": [{**_push()["events"][0], "id": "ev\x00"}]}, "events[0].id"),
        (_push(mediaType="application/json\x00"), "events[0].target.mediaType"),
    ],
)
def test_the_webhook_refuses_out_of_range_values_with_400(post_events, body, field):
    response = post_events(body)
    assert response.status_code == 400, response.content
    assert field in response.json()["message"]
    assert RegistryEvent.objects.count() == 0


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/registry/tags/?instance=%C2%B2",
        "/api/v1/registry/namespaces/?instance=%C2%B2",
        "/api/v1/registry/tags/?instance=99999999999999999999999",
        "/api/v1/signing/signatures/?policy=%C2%B2",
        "/api/v1/signing/policies/?instance=%C2%B2",
    ],
)
def test_list_filters_with_odd_digits_never_answer_500(superuser_client, url):
    response = superuser_client.get(url)
    assert response.status_code in {200, 400, 404}, response.content


def test_signing_with_an_odd_digit_instance_is_a_client_error(superuser_client):
    response = superuser_client.post(
        "/api/v1/signing/sign/", {"instance": "²", "namespace": "prod"}, format="json"
    )
    assert 400 <= response.status_code < 500, response.content


def test_credentials_in_the_backend_url_are_refused(superuser_client):
    response = superuser_client.post(
        "/api/v1/registry/instances/",
        {
            "name": "leaky",
            "backend_url": "http://robot:hunter2@127.0.0.1:5000",
            "default_domain": "r.example.com",
        },
        format="json",
    )
    assert response.status_code == 400
    assert "hunter2" not in response.content.decode()
    assert "credentials" in response.json()["fields"]["backend_url"][0]


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/registry/instances/?region=ap%00x",
        "/api/v1/registry/tags/?search=a%00",
        "/api/v1/kms/keys/?search_alias=%00",
    ],
)
def test_query_parameters_with_nul_characters_answer_400(superuser_client, url):
    response = superuser_client.get(url)
    assert response.status_code == 400
    assert response.json()["code"] == "InvalidParameter"
    assert "NUL" in response.json()["message"]


def test_admin_searches_with_nul_characters_answer_400(admin_client):
    response = admin_client.get("/admin/registry/tag/?q=v1%00")
    assert response.status_code == 400
