"""The notifications webhook, driven with the captured Distribution bodies."""

from __future__ import annotations

import io
import json

import pytest
from django.test import RequestFactory, override_settings

from registry import services
from registry.api.webhook import registry_events
from registry.models import (
    EventStatus,
    Manifest,
    ManifestReference,
    Namespace,
    RegistryEvent,
    Repository,
    Tag,
    TagHistory,
)
from tests.registry import events as ev
from tests.registry.conftest import db_snapshot, make_instance

pytestmark = pytest.mark.django_db

SAMPLE_DIGEST = "sha256:8008d244da857ce428566420c62f74f550377b4a40581ba3cae1245de04242cd"


# --- pushes -----------------------------------------------------------------------------


def test_it_records_a_manifest_pushed_by_tag_from_the_captured_body(post_events, instance):
    response = post_events(ev.sample_push())

    assert response.status_code == 200
    body = response.json()
    assert body["received"] == 1
    assert body["processed"] == 1
    assert body["manifests_created"] == 1
    assert body["tags_created"] == 1
    namespace = Namespace.objects.get()
    assert (namespace.instance, namespace.name) == (instance, "prod-ns")
    repository = Repository.objects.get()
    assert (repository.namespace, repository.name) == (namespace, "prod-ns/web-app")
    manifest = Manifest.objects.get()
    assert manifest.digest == SAMPLE_DIGEST
    assert manifest.media_type == "application/vnd.oci.image.manifest.v1+json"
    assert manifest.size == 401
    assert manifest.pushed_at.isoformat() == "2026-11-28T13:29:26.077299+00:00"
    tag = Tag.objects.get()
    assert (tag.repository, tag.name, tag.manifest) == (repository, "v1.2.3", manifest)
    assert tag.pushed_at == tag.updated_at == manifest.pushed_at
    history = TagHistory.objects.get()
    assert (history.from_digest, history.to_digest) == ("", SAMPLE_DIGEST)
    recorded = RegistryEvent.objects.get()
    assert recorded.event_id == "d4428702-08aa-4430-a8db-4339fa6e0164"
    assert recorded.status == EventStatus.PROCESSED
    assert (recorded.repository, recorded.tag, recorded.digest) == (
        "prod-ns/web-app",
        "v1.2.3",
        SAMPLE_DIGEST,
    )


def test_it_accepts_plain_application_json(post_events):
    response = post_events(ev.sample_push(), content_type="application/json; charset=utf-8")

    assert response.status_code == 200
    assert Tag.objects.filter(name="v1.2.3").exists()


def test_it_records_a_manifest_pushed_by_digest_without_a_tag(post_events):
    response = post_events(ev.envelope(ev.sample_event("push PUT manifest no-tag")))

    assert response.status_code == 200
    manifest = Manifest.objects.get()
    assert manifest.repository.name == "multi/app"
    assert manifest.digest == (
        "sha256:c2ff59506abc0834977765d5e9715d93dc0ecf316d594a01d306410a154ec6e9"
    )
    assert not Tag.objects.exists()


def test_it_ignores_blob_pull_mount_and_signature_events(post_events):
    kinds = [
        "push PUT blob no-tag",
        "mount POST blob no-tag",
        "pull GET blob no-tag",
        "pull GET manifest no-tag",
        "pull GET manifest tag",
        "pull GET manifest sig",
        "pull HEAD blob no-tag",
        "pull HEAD manifest sig",
        "pull HEAD manifest tag",
        "push PUT manifest sig",
        "delete DELETE tag sig",
    ]
    response = post_events(ev.envelope(*[ev.sample_event(kind) for kind in kinds]))

    assert response.status_code == 200
    assert response.json()["ignored"] == len(kinds)
    assert response.json()["processed"] == 0
    assert not Manifest.objects.exists()
    assert not Tag.objects.exists()
    assert not Repository.objects.exists()
    reasons = dict(RegistryEvent.objects.values_list("event_id", "reason"))
    assert set(RegistryEvent.objects.values_list("status", flat=True)) == {EventStatus.IGNORED}
    assert reasons[ev.sample_event("push PUT manifest sig")["id"]] == "signature artifact tag"
    assert reasons[ev.sample_event("push PUT blob no-tag")["id"]] == (
        "not a manifest (application/octet-stream)"
    )
    assert reasons[ev.sample_event("pull GET manifest tag")["id"]] == "pull events are not recorded"
    assert reasons[ev.sample_event("mount POST blob no-tag")["id"]] == (
        "mount events are not recorded"
    )


@pytest.mark.parametrize("suffix", ["sig", "att", "sbom"])
def test_it_ignores_every_kind_of_signature_artifact_tag(post_events, suffix):
    tag = f"sha256-{'a' * 64}.{suffix}"
    response = post_events(ev.envelope(ev.push("prod/app", tag, ev.digest_of(suffix))))

    assert response.status_code == 200
    assert response.json()["ignored"] == 1
    assert not Manifest.objects.exists()


def test_it_records_a_tag_that_only_looks_like_a_signature(post_events):
    tag = f"sha256-{'a' * 64}.sig.old"
    response = post_events(ev.envelope(ev.push("prod/app", tag, ev.digest_of("x"))))

    assert response.status_code == 200
    assert Tag.objects.get().name == tag


def test_it_records_an_index_and_links_children_pushed_before_it(post_events):
    amd, arm, index = ev.digest_of("amd"), ev.digest_of("arm"), ev.digest_of("index")
    response = post_events(
        ev.envelope(
            ev.push("prod/multi", None, amd),
            ev.push("prod/multi", None, arm),
            ev.push_index("prod/multi", "v1", index, [amd, arm]),
        )
    )

    assert response.status_code == 200
    assert response.json()["manifests_created"] == 3
    parent = Manifest.objects.get(digest=index)
    assert parent.is_index
    assert {m.digest for m in parent.children.all()} == {amd, arm}
    assert Manifest.objects.get(digest=amd).parents.get() == parent
    platforms = dict(ManifestReference.objects.values_list("child_digest", "platform"))
    assert platforms == {amd: "linux/amd64", arm: "linux/arm64"}
    assert Tag.objects.get().manifest == parent


def test_it_links_children_that_arrive_after_their_index(post_events):
    amd, arm, index = ev.digest_of("amd"), ev.digest_of("arm"), ev.digest_of("index")
    post_events(ev.envelope(ev.push_index("prod/multi", "v1", index, [amd, arm])))
    parent = Manifest.objects.get(digest=index)
    assert parent.child_references.filter(child__isnull=True).count() == 2

    post_events(ev.envelope(ev.push("prod/multi", None, amd)))
    post_events(ev.envelope(ev.push("prod/multi", None, arm)))

    assert {m.digest for m in parent.children.all()} == {amd, arm}
    assert not parent.child_references.filter(child__isnull=True).exists()


def test_it_moves_a_re_pushed_tag_and_keeps_the_history(post_events):
    old, new = ev.digest_of("old"), ev.digest_of("new")
    post_events(ev.envelope(ev.push("prod/app", "latest", old)))
    first = Tag.objects.get()

    response = post_events(ev.envelope(ev.push("prod/app", "latest", new)))

    assert response.json()["tags_moved"] == 1
    tag = Tag.objects.get()
    assert tag.pk == first.pk
    assert tag.manifest.digest == new
    assert tag.pushed_at == first.pushed_at
    assert tag.updated_at > first.updated_at
    history = list(TagHistory.objects.order_by("moved_at").values_list("from_digest", "to_digest"))
    assert history == [("", old), (old, new)]
    assert Manifest.objects.count() == 2  # the old manifest still exists in the registry


def test_it_leaves_a_tag_alone_when_the_same_digest_is_pushed_again(post_events):
    digest = ev.digest_of("same")
    post_events(ev.envelope(ev.push("prod/app", "v1", digest)))
    before = db_snapshot()

    response = post_events(ev.envelope(ev.push("prod/app", "v1", digest)))  # a new event id

    assert response.json()["tags_unchanged"] == 1
    after = db_snapshot()
    assert after["Tag"] == before["Tag"]
    assert after["TagHistory"] == before["TagHistory"]
    assert after["Manifest"] == before["Manifest"]
    assert RegistryEvent.objects.order_by("-id").first().reason == "already recorded"


def test_a_duplicate_delivery_changes_nothing(post_events):
    post_events(ev.sample_push())
    before = db_snapshot()

    response = post_events(ev.sample_push())

    assert response.status_code == 200
    assert response.json()["duplicates"] == 1
    assert response.json()["processed"] == 0
    assert db_snapshot() == before


def test_a_repeated_event_id_inside_one_delivery_counts_once(post_events):
    event = ev.push("prod/app", "v1", ev.digest_of("a"))
    response = post_events(ev.envelope(event, event))

    assert response.json()["duplicates"] == 1
    assert RegistryEvent.objects.count() == 1


def test_event_ids_are_unique_per_instance_not_globally(post_events, db):
    other, other_token = make_instance("staging")
    post_events(ev.sample_push())

    response = post_events(ev.sample_push(), token=other_token, instance_name="staging")

    assert response.json()["processed"] == 1
    assert Tag.objects.filter(repository__namespace__instance=other).count() == 1


def test_it_ignores_a_repository_outside_any_namespace(post_events):
    response = post_events(ev.envelope(ev.push("alpine", "3", ev.digest_of("alpine"))))

    assert response.status_code == 200
    assert RegistryEvent.objects.get().reason == "repository is not inside a valid namespace"
    assert not Repository.objects.exists()


def test_it_records_a_repository_with_several_path_segments(post_events):
    post_events(ev.envelope(ev.push("prod/team/app", "v1", ev.digest_of("a"))))

    repository = Repository.objects.get()
    assert (repository.namespace.name, repository.name, repository.short_name) == (
        "prod",
        "prod/team/app",
        "team/app",
    )


# --- deletes ----------------------------------------------------------------------------


def test_a_delete_by_digest_removes_the_manifest_and_its_tags(post_events):
    digest, kept = ev.digest_of("gone"), ev.digest_of("kept")
    post_events(
        ev.envelope(
            ev.push("prod/app", "v1", digest),
            ev.push("prod/app", "stable", digest),
            ev.push("prod/app", "v2", kept),
        )
    )

    # What Distribution sends: delete {digest}, then delete {tag} per tag that pointed at it.
    response = post_events(
        ev.envelope(
            ev.delete_digest("prod/app", digest),
            ev.delete_tag("prod/app", "v1"),
            ev.delete_tag("prod/app", "stable"),
        )
    )

    assert response.status_code == 200
    assert response.json()["manifests_deleted"] == 1
    assert response.json()["tags_deleted"] == 2
    assert list(Manifest.objects.values_list("digest", flat=True)) == [kept]
    assert list(Tag.objects.values_list("name", flat=True)) == ["v2"]
    assert list(
        RegistryEvent.objects.filter(action="delete")
        .values_list("reason", flat=True)
        .order_by("id")
    ) == ["", "not recorded in Signet", "not recorded in Signet"]


def test_a_delete_by_tag_removes_only_the_tag(post_events):
    digest = ev.digest_of("a")
    post_events(ev.envelope(ev.push("prod/app", "v1", digest), ev.push("prod/app", "v2", digest)))

    response = post_events(ev.envelope(ev.delete_tag("prod/app", "v1")))

    assert response.json()["tags_deleted"] == 1
    assert list(Tag.objects.values_list("name", flat=True)) == ["v2"]
    assert Manifest.objects.get().digest == digest


def test_a_delete_of_something_never_recorded_is_harmless(post_events):
    response = post_events(ev.envelope(ev.sample_event("delete DELETE manifest no-tag")))

    assert response.status_code == 200
    assert RegistryEvent.objects.get().reason == "not recorded in Signet"


def test_deleting_an_index_child_keeps_the_reference_by_digest(post_events):
    amd, index = ev.digest_of("amd"), ev.digest_of("index")
    post_events(
        ev.envelope(ev.push("prod/m", None, amd), ev.push_index("prod/m", "v1", index, [amd]))
    )

    post_events(ev.envelope(ev.delete_digest("prod/m", amd)))

    reference = ManifestReference.objects.get()
    assert reference.child is None
    assert reference.child_digest == amd
    assert reference.parent.digest == index


# --- bad input: precise 4xx, nothing written --------------------------------------------


@pytest.fixture
def unchanged(post_events):
    """Record one push first, then assert the database did not change in the test."""
    post_events(ev.sample_push())
    before = db_snapshot()
    yield
    assert db_snapshot() == before


def _error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["code"] == code
    assert body["message"]
    return body


def test_it_answers_401_without_a_token(post_events, unchanged):
    response = post_events(ev.envelope(ev.push("prod/app", "v9", ev.digest_of("z"))), token=None)

    _error(response, 401, "AuthFailure")
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header", ["Bearer wrong-token", "Basic dXNlcjpwYXNz", "Bearer", "Token x"]
)
def test_it_answers_401_for_a_wrong_token_or_scheme(post_events, unchanged, header):
    response = post_events(
        ev.envelope(ev.push("prod/app", "v9", ev.digest_of("z"))),
        token=None,
        authorization=header,
    )

    _error(response, 401, "AuthFailure")


@pytest.fixture
def other_token(instance) -> str:
    return make_instance("staging")[1]


def test_it_answers_401_for_another_instances_token(post_events, other_token, unchanged):
    response = post_events(
        ev.envelope(ev.push("prod/app", "v9", ev.digest_of("z"))), token=other_token
    )

    _error(response, 401, "AuthFailure")


def test_an_unknown_instance_answers_exactly_like_a_wrong_token(
    post_events, webhook_token, unchanged
):
    """Instance names cannot be enumerated: same status, body and header either way."""
    unknown = post_events(ev.sample_push(), instance_name="nope", token=webhook_token)
    wrong = post_events(ev.sample_push(), token="wrong-token")
    unknown_without_token = post_events(ev.sample_push(), instance_name="nope", token=None)
    known_without_token = post_events(ev.sample_push(), token=None)

    assert _error(unknown, 401, "AuthFailure") == _error(wrong, 401, "AuthFailure")
    assert unknown["WWW-Authenticate"] == wrong["WWW-Authenticate"]
    assert "nope" not in unknown.content.decode()
    assert _error(unknown_without_token, 401, "AuthFailure") == _error(
        known_without_token, 401, "AuthFailure"
    )


def test_it_answers_400_for_malformed_json(post_events, unchanged):
    response = post_events(b'{"events": [')

    body = _error(response, 400, "InvalidParameter")
    assert "not valid JSON" in body["message"]


def test_it_answers_400_for_a_body_that_is_not_utf8(post_events, unchanged):
    response = post_events(b'{"events": ["\xff"]}')

    _error(response, 400, "InvalidParameter")


def test_it_answers_400_for_deeply_nested_json(post_events, unchanged):
    response = post_events(b"[" * 100_000 + b"]" * 100_000)

    assert response.status_code == 400


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "events"),
        ([], "events"),
        ({"events": {}}, "events"),
        ({"events": ["x"]}, "events[0]"),
        ({"events": [{"action": "push", "target": {"repository": "prod/a"}}]}, "events[0].id"),
        ({"events": [{"id": "", "action": "push", "target": {}}]}, "events[0].id"),
        ({"events": [{"id": "e1", "target": {"repository": "prod/a"}}]}, "events[0].action"),
        ({"events": [{"id": "e1", "action": "push"}]}, "events[0].target"),
        (
            {"events": [{"id": "e1", "action": "delete", "target": {"repository": "prod/a"}}]},
            "events[0].target",
        ),
    ],
)
def test_it_answers_400_naming_the_broken_part_of_the_envelope(post_events, unchanged, body, field):
    response = post_events(body)

    result = _error(response, 400, "InvalidParameterValue")
    assert field in result["fields"]
    assert result["message"].startswith(field)


def test_it_answers_400_for_an_invalid_digest_and_writes_nothing_of_the_delivery(
    post_events, unchanged
):
    good = ev.push("prod/app", "v2", ev.digest_of("good"))
    bad = ev.push("prod/app", "v3", "sha256:NOT-HEX")

    response = post_events(ev.envelope(good, bad))

    body = _error(response, 400, "InvalidParameterValue")
    assert "events[1].target.digest" in body["fields"]
    assert not Tag.objects.filter(name="v2").exists()


@pytest.mark.parametrize(
    "digest",
    ["sha256:" + "a" * 63, "sha512:" + "a" * 128, "sha256:" + "a" * 64 + "\n", ""],
)
def test_it_answers_400_for_each_malformed_manifest_digest(post_events, unchanged, digest):
    response = post_events(ev.envelope(ev.push("prod/app", "v2", digest)))

    assert _error(response, 400, "InvalidParameterValue")["fields"].keys() == {
        "events[0].target.digest"
    }


@pytest.mark.parametrize(
    "repository",
    ["Prod/App", "prod//app", "/prod/app", "prod/app/", "prod/a" * 60, "prod/app\n"],
)
def test_it_answers_400_for_an_invalid_repository_name(post_events, unchanged, repository):
    response = post_events(ev.envelope(ev.push(repository, "v2", ev.digest_of("r"))))

    body = _error(response, 400, "InvalidParameterValue")
    assert "events[0].target.repository" in body["fields"]


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda e: e["target"].update(tag="-bad"), "events[0].target.tag"),
        (lambda e: e["target"].update(size=-1), "events[0].target.size"),
        (lambda e: e["target"].update(size="401"), "events[0].target.size"),
        (lambda e: e.update(timestamp="yesterday"), "events[0].timestamp"),
        (lambda e: e.update(timestamp="2026-11-28T13:29:26"), "events[0].timestamp"),
        (
            lambda e: e["target"].update(references=[{"digest": "md5:x"}]),
            "events[0].target.references[0].digest",
        ),
        (lambda e: e["target"].update(references="none"), "events[0].target.references"),
        (lambda e: e.update(id="x" * 101), "events[0].id"),
    ],
)
def test_it_answers_400_for_other_invalid_event_fields(post_events, unchanged, mutate, field):
    event = ev.push("prod/app", "v2", ev.digest_of("r"))
    mutate(event)

    body = _error(post_events(ev.envelope(event)), 400, "InvalidParameterValue")
    assert field in body["fields"]


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"],
)
def test_it_answers_415_for_another_content_type(post_events, unchanged, content_type):
    response = post_events(json.dumps(ev.sample_push()), content_type=content_type)

    _error(response, 415, "UnsupportedMediaType")


def test_it_answers_413_when_the_declared_body_is_too_large(post_events, unchanged):
    body = ev.envelope(*[ev.push("prod/app", f"t{i}", ev.digest_of(str(i))) for i in range(20)])
    with override_settings(REGISTRY_WEBHOOK_MAX_BODY_BYTES=2048):
        response = post_events(body)

    _error(response, 413, "RequestTooLarge")


def test_it_answers_413_when_the_bytes_read_exceed_the_limit(instance, webhook_token, unchanged):
    # A server that streams the body without a Content-Length (chunked): only the read counts.
    payload = json.dumps(
        ev.envelope(*[ev.push("prod/app", f"t{i}", ev.digest_of(str(i))) for i in range(20)])
    ).encode()
    request = RequestFactory().post(
        f"/api/v1/registry/instances/{instance.name}/events/",
        data=b"{}",
        content_type=ev.EVENTS_TYPE,
        HTTP_AUTHORIZATION=f"Bearer {webhook_token}",
    )
    request._stream = io.BytesIO(payload)
    request.META.pop("CONTENT_LENGTH", None)
    with override_settings(REGISTRY_WEBHOOK_MAX_BODY_BYTES=2048):
        response = registry_events(request, instance.name)

    assert response.status_code == 413
    assert json.loads(response.content)["code"] == "RequestTooLarge"


def test_a_body_at_the_limit_is_accepted(post_events):
    body = json.dumps(ev.sample_push()).encode()
    with override_settings(REGISTRY_WEBHOOK_MAX_BODY_BYTES=len(body)):
        response = post_events(body)

    assert response.status_code == 200


def test_it_answers_405_for_get(client, instance, webhook_token):
    response = client.get(
        f"/api/v1/registry/instances/{instance.name}/events/",
        HTTP_AUTHORIZATION=f"Bearer {webhook_token}",
    )

    assert response.status_code == 405
    assert response.json()["code"] == "UnsupportedOperation"


def test_a_rotated_token_replaces_the_old_one_at_once(post_events, instance, webhook_token):
    new_token = services.rotate_webhook_token(instance=instance)

    assert post_events(ev.sample_push()).status_code == 401
    assert post_events(ev.sample_push(), token=new_token).status_code == 200


@override_settings(KMS_MASTER_KEY="")
def test_the_webhook_needs_neither_the_kms_nor_the_registry(post_events, instance):
    # No master key (any KMS use would fail) and a backend nobody listens on.
    response = post_events(ev.sample_push())

    assert response.status_code == 200
    assert Tag.objects.exists()


# --- extension points -------------------------------------------------------------------


@override_settings(REGISTRY_PUSH_HANDLERS=["tests.registry.handlers.record_push"])
def test_push_handlers_run_inside_the_recording_transaction(
    post_events, recorded_calls, instance, django_capture_on_commit_callbacks
):
    from tests.registry import handlers

    amd, index = ev.digest_of("amd"), ev.digest_of("index")
    with django_capture_on_commit_callbacks(execute=True):
        response = post_events(
            ev.envelope(
                ev.push("prod/m", None, amd),
                ev.push_index("prod/m", "v1", index, [amd]),
                ev.sample_event("push PUT manifest sig"),
                ev.sample_event("push PUT blob no-tag"),
            )
        )

    assert response.status_code == 200
    assert response.json()["handler_errors"] == 0
    assert recorded_calls == [
        {
            "kind": "push",
            "instance": "prod",
            "digests": [amd, index],
            "tags": [("prod/m", "v1", index)],
            "source": "webhook",
            "in_atomic_block": True,
            "manifests_visible": 2,
            "tags_visible": 1,
        }
    ]
    # The handler's own row committed with the push; its on_commit work ran after it.
    assert instance.domains.filter(name="h1.handler.example").exists()
    committed = handlers.COMMITTED
    assert committed == [[amd, index]]


@override_settings(REGISTRY_PUSH_HANDLERS=["tests.registry.handlers.record_push"])
def test_push_handlers_hear_about_moved_tags_but_not_duplicates_or_unchanged_tags(
    post_events, recorded_calls
):
    old, new = ev.digest_of("old"), ev.digest_of("new")
    first = ev.push("prod/app", "v1", old)
    post_events(ev.envelope(first))
    post_events(ev.envelope(first))  # duplicate delivery
    post_events(ev.envelope(ev.push("prod/app", "v1", old)))  # same digest, new event
    post_events(ev.envelope(ev.push("prod/app", "v1", new)))  # moved

    assert [(c["digests"], c["tags"]) for c in recorded_calls] == [
        ([old], [("prod/app", "v1", old)]),
        ([new], [("prod/app", "v1", new)]),
    ]


@override_settings(
    REGISTRY_PUSH_HANDLERS=[
        "tests.registry.handlers.write_then_fail",
        "tests.registry.handlers.record_push",
    ]
)
def test_a_failing_push_handler_is_rolled_back_alone_and_the_push_is_kept(
    post_events, recorded_calls, instance, caplog
):
    response = post_events(ev.sample_push())

    assert response.status_code == 200
    assert response.json()["handler_errors"] == 1
    assert Tag.objects.filter(name="v1.2.3").exists()
    assert not instance.domains.filter(name="failing.handler.example").exists()
    assert instance.domains.filter(name="h2.handler.example").exists()  # the next one ran
    assert "tests.registry.handlers.write_then_fail failed" in caplog.text


@override_settings(REGISTRY_DELETE_HANDLERS=["tests.registry.handlers.record_delete"])
def test_delete_handlers_run_before_the_manifest_is_deleted(post_events, recorded_calls):
    digest = ev.digest_of("a")
    post_events(ev.envelope(ev.push("prod/app", "v1", digest)))

    post_events(ev.envelope(ev.delete_digest("prod/app", digest)))

    assert recorded_calls == [
        {
            "kind": "delete",
            "instance": "prod",
            "digests": [digest],
            "source": "webhook",
            "still_recorded": 1,
        }
    ]
    assert not Manifest.objects.exists()


@override_settings(
    REGISTRY_PUSH_HANDLERS=["tests.registry.handlers.record_push"],
    REGISTRY_DELETE_HANDLERS=["tests.registry.handlers.record_delete"],
)
def test_handlers_see_a_push_before_a_delete_of_it_in_the_same_delivery(
    post_events, recorded_calls
):
    digest = ev.digest_of("short-lived")
    post_events(
        ev.envelope(ev.push("prod/app", "v1", digest), ev.delete_digest("prod/app", digest))
    )

    assert [(c["kind"], c["digests"]) for c in recorded_calls] == [
        ("push", [digest]),
        ("delete", [digest]),
    ]
    assert recorded_calls[0]["manifests_visible"] == 1


@override_settings(REGISTRY_DELETE_HANDLERS=["tests.registry.handlers.fail_delete"])
def test_a_failing_delete_handler_refuses_the_delete_so_nothing_is_orphaned(post_events):
    digest = ev.digest_of("a")
    post_events(ev.envelope(ev.push("prod/app", "v1", digest)))
    before = RegistryEvent.objects.count()

    response = post_events(ev.envelope(ev.delete_digest("prod/app", digest)))

    # 503: the registry redelivers, and the signatures hanging off the image stay tracked.
    assert response.status_code == 503
    assert response.json()["code"] == "FailedOperation.DeleteHandlerFailed"
    assert Manifest.objects.filter(digest=digest).exists()
    assert RegistryEvent.objects.count() == before
