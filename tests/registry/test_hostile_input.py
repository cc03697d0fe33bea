"""Input that once reached the database or Python's int/datetime limits answers 4xx, not 500."""

from __future__ import annotations

import json

import pytest

from registry.models import ManifestReference, RegistryEvent
from registry.services.events import parse_index_children
from tests.registry import events as ev

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


# Integers past Python's 4,300-digit int-string limit (json.loads raised ValueError), lone
# surrogates (valid JSON escapes no database driver can encode: UnicodeEncodeError) and NUL
# characters (PostgreSQL text refuses them: DataError) once gave 500 here.
HUGE = "9" * 5000


def _raw(body: dict, **placeholders: str) -> str:
    """``body`` as JSON text, each ``"<name>"`` string replaced by its raw JSON text."""
    text = json.dumps(body)
    for name, raw in placeholders.items():
        text = text.replace(json.dumps(f"<{name}>"), raw)
    return text


def _index_push(platform: dict) -> dict:
    event = ev.push_index("prod/app", "v1", ev.digest_of("index"), [ev.digest_of("amd64")])
    event["target"]["references"][0]["platform"] = platform
    return ev.envelope(event)


def _event(**fields) -> dict:
    return {"events": [{**_push()["events"][0], **fields}]}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_raw(_push(size="<n>"), n=HUGE), "events[0].target.size"),
        (_raw(_push(size="<n>"), n="-" + HUGE), "events[0].target.size"),
        (_raw(_event(id="<n>"), n=HUGE), "events[0].id"),
        (_raw(_event(timestamp="<n>"), n=HUGE), "events[0].timestamp"),
        (_event(id="ev-\ud800"), "events[0].id"),
        (_event(action="push\udfff"), "events[0].action"),
        (_event(action="pull\udc00"), "events[0].action"),
        (_event(action="pull\x00"), "events[0].action"),
        (_event(action="\x00"), "events[0].action"),
        (_push(mediaType="application/octet-stream\ud800"), "events[0].target.mediaType"),
        (
            _index_push({"os": "linux\ud800", "architecture": "amd64"}),
            "events[0].target.references[0].platform",
        ),
        (
            _index_push({"os": "linux", "architecture": "amd64\x00"}),
            "events[0].target.references[0].platform",
        ),
        (
            _index_push({"os": "linux", "variant": "\udbff"}),
            "events[0].target.references[0].platform",
        ),
    ],
)
def test_the_webhook_refuses_huge_integers_lone_surrogates_and_nul_with_400_naming_the_field(
    post_events, body, field
):
    response = post_events(body)

    assert response.status_code == 400, response.content
    answer = response.json()
    assert answer["code"] == "InvalidParameterValue"
    assert list(answer["fields"]) == [field]
    assert answer["message"].startswith(f"{field}: ")
    assert RegistryEvent.objects.count() == 0
    assert ManifestReference.objects.count() == 0


def test_a_huge_integer_in_a_field_signet_does_not_read_is_ignored(post_events):
    body = ev.sample_push()
    body["events"][0]["target"]["length"] = "<n>"

    response = post_events(_raw(body, n=HUGE))

    assert response.status_code == 200, response.content
    assert RegistryEvent.objects.get().event_id == "d4428702-08aa-4430-a8db-4339fa6e0164"


def test_platforms_that_cannot_be_stored_are_left_out_of_an_index_document():
    document = {
        "manifests": [
            {"digest": ev.digest_of("a"), "mediaType": "x\x00", "platform": {"os": "linux\ud800"}},
            {
                "digest": ev.digest_of("b"),
                "mediaType": ev.OCI_MANIFEST,
                "platform": {"os": "linux"},
            },
        ]
    }

    children = parse_index_children(document)

    assert [(c.media_type, c.platform) for c in children] == [("", ""), (ev.OCI_MANIFEST, "linux")]


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
