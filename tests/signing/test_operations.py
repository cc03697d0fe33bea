"""Issue 12, points 2 and 5: long signing work is an operation that answers at once and
shows its progress; a new policy offers to sign the namespace's existing images.

The requests run with ``SIGNING_DISPATCH = "thread"``: the work is handed to the pool
after commit, which never comes inside a test's transaction, so what the request itself
did is what the test sees (nothing signed). The test then does the worker's part with
``sign_signatures`` (or ``run_cleanups``), in its own thread, and reads the progress again.
Real registry, real KMS, real PostgreSQL.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.models import Role
from kms import services as kms_services
from registry import services as registry_services
from registry.models import Instance, Tag
from signing import services
from signing.models import (
    OperationKind,
    Signature,
    SignatureStatus,
    SigningOperation,
    SigningPolicy,
)
from signing.services.cleanups import run_cleanups
from signing.services.operations import start_signing
from tests.accounts.support import grant
from tests.factories import make_key, make_token, make_user
from tests.signing.conftest import NAMESPACE, sig_manifest
from tests.support.oci import push_image

pytestmark = pytest.mark.django_db

TAGS = reverse("admin:registry_tag_changelist")
API = "/api/v1/signing"
PROGRESS = re.compile(r"/admin/signing/signingoperation/(\d+)/progress/$")


@pytest.fixture
def background(settings):
    """Work goes to the pool after commit: inside the test's transaction, never."""
    settings.SIGNING_DISPATCH = "thread"


def pushed(instance: Instance, registry, *names: str) -> list[Tag]:
    """Push images to the real registry and record them with a sync (nothing signs)."""
    for name in names:
        push_image(registry, "team/app", name, seed=f"ops-{name}")
    assert not registry_services.sync_instance(instance=instance).errors
    return list(
        Tag.objects.filter(repository__name="team/app", name__in=names)
        .select_related("manifest__repository")
        .order_by("name")
    )


def operation_of(url: str) -> SigningOperation:
    match = PROGRESS.search(url)
    assert match, url
    return SigningOperation.objects.get(pk=int(match.group(1)))


def counts(page: str) -> dict[str, str]:
    found = dict(re.findall(r'data-progress="(\w+)">(\d+)<', page))
    state = re.search(r'id="operation-state">(\w+)<', page)
    assert state, "no #operation-state"
    found["state"] = state.group(1)
    return found


def progress_json(client, operation: SigningOperation) -> dict[str, Any]:
    url = reverse("admin:signing_signingoperation_progress_json", args=[operation.pk])
    response = client.get(url)
    assert response.status_code == 200
    return response.json()


def work(operation: SigningOperation) -> None:
    """The workers' part: sign what the operation covers."""
    services.sign_signatures(list(operation.items.values_list("signature_id", flat=True)))


def pending_filter(client) -> set[str]:
    page = client.get(TAGS, {"signature": "pending"}).content.decode()
    return set(re.findall(r"team/app:(v\d+)", page))


def sign_selected(client, tags: list[Tag]):
    return client.post(
        TAGS, {"action": "sign_selected", "_selected_action": [t.pk for t in tags], "index": 0}
    )


# --- point 2: bulk sign answers at once, with live progress ---------------------------------


def test_sign_selected_answers_at_once_and_shows_live_progress(
    admin_client, instance, policy, registry, background
):
    tags = pushed(instance, registry, "v1", "v2", "v3")

    response = sign_selected(admin_client, tags)

    # At once: to the progress page, nothing signed in the request, every row pending.
    assert response.status_code == 302
    operation = operation_of(response.url)
    assert (operation.kind, operation.created_by.username) == (OperationKind.SIGN, "root")
    assert set(Signature.objects.values_list("status", flat=True)) == {SignatureStatus.PENDING}
    assert all(sig_manifest(registry, "team/app", t.manifest.digest) is None for t in tags)
    page = admin_client.get(response.url).content.decode()
    assert counts(page) == {
        "total": "3",
        "pending": "3",
        "signed": "0",
        "failed": "0",
        "state": "running",
    }
    assert "setTimeout(poll, 1000)" in page  # the page polls its JSON view, no reload
    assert progress_json(admin_client, operation)["pending"] == 3
    assert pending_filter(admin_client) == {"v1", "v2", "v3"}

    work(operation)

    data = progress_json(admin_client, operation)
    assert {
        k: data[k] for k in ("id", "kind", "state", "total", "pending", "signed", "failed")
    } == {
        "id": operation.pk,
        "kind": "sign",
        "state": "finished",
        "total": 3,
        "pending": 0,
        "signed": 3,
        "failed": 0,
    }
    operation.refresh_from_db()
    assert operation.finished_at is not None
    assert counts(admin_client.get(response.url).content.decode())["state"] == "finished"
    assert pending_filter(admin_client) == set()
    assert all(sig_manifest(registry, "team/app", t.manifest.digest) for t in tags)


def test_a_failed_row_asked_for_again_is_pending_until_tried_and_counts_per_operation(
    admin_client, instance, policy, registry, background
):
    (tag,) = pushed(instance, registry, "v1")
    kms_services.disable_key(key_id=str(policy.key.key_id))
    first = operation_of(sign_selected(admin_client, [tag]).url)
    work(first)
    assert progress_json(admin_client, first)["failed"] == 1
    assert Signature.objects.get().status == SignatureStatus.FAILED
    kms_services.enable_key(key_id=str(policy.key.key_id))

    retry = admin_client.post(reverse("admin:signing_signingpolicy_retry_failed", args=[policy.pk]))

    second = operation_of(retry.url)
    assert second.kind == OperationKind.RETRY
    assert Signature.objects.get().status == SignatureStatus.PENDING  # under Pending at once
    assert pending_filter(admin_client) == {"v1"}
    assert (
        progress_json(admin_client, first)["failed"],
        progress_json(admin_client, second)["pending"],
    ) == (1, 1)
    work(second)
    # The row belongs to both: each reads it against its own start.
    assert progress_json(admin_client, second)["signed"] == 1
    assert progress_json(admin_client, first)["signed"] == 1


# --- point 2: re-sign in progress: the button is disabled, a second request refused ------


def test_a_resign_under_way_disables_the_button_and_refuses_a_second_one(
    admin_client, instance, policy, registry, background, superuser
):
    tags = pushed(instance, registry, "v1", "v2")
    services.request_signing(manifests=[t.manifest for t in tags])  # inline: signed
    services.update_policy(policy=policy, key=make_key("rotated"))
    change = reverse("admin:signing_signingpolicy_change", args=[policy.pk])
    assert re.search(
        r'<button type="submit" id="resign-button">Re-sign 2 images',
        (admin_client.get(change).content.decode()),
    )

    response = admin_client.post(reverse("admin:signing_signingpolicy_resign", args=[policy.pk]))

    operation = operation_of(response.url)
    assert operation.kind == OperationKind.RESIGN
    # The old signatures stay valid (status signed) but the rows show under Pending.
    assert set(Signature.objects.values_list("status", flat=True)) == {SignatureStatus.SIGNED}
    assert pending_filter(admin_client) == {"v1", "v2"}
    page = admin_client.get(change).content.decode()
    assert re.search(
        r'<button type="button" id="resign-button" disabled[^>]*>Re-sign in progress: 0/2</button>',
        page,
    )
    again = admin_client.post(
        reverse("admin:signing_signingpolicy_resign", args=[policy.pk]), follow=True
    )
    assert [str(m) for m in again.context["messages"]] == [
        "Policy team-policy: a re-sign of policy team-policy is in progress (0/2); wait for "
        "it to finish."
    ]
    api = make_token(superuser)
    refused = admin_client.post(
        f"{API}/policies/{policy.pk}/resign/", HTTP_AUTHORIZATION=f"Token {api}"
    )
    assert refused.status_code == 409
    assert refused.json()["code"] == "OperationInProgress"
    assert SigningOperation.objects.filter(kind=OperationKind.RESIGN).count() == 1

    work(operation)

    page = admin_client.get(change).content.decode()
    assert "Re-sign in progress" not in page
    assert pending_filter(admin_client) == set()
    assert progress_json(admin_client, operation)["signed"] == 2


# --- point 2: the API resource ------------------------------------------------------------


def test_the_api_sign_answers_with_the_operation_and_its_progress(
    client, instance, policy, registry, background, superuser
):
    pushed(instance, registry, "v1", "v2")
    token = make_token(superuser)
    auth = {"HTTP_AUTHORIZATION": f"Token {token}"}

    response = client.post(
        f"{API}/sign/",
        {"instance": instance.name, "namespace": NAMESPACE},
        content_type="application/json",
        **auth,
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["signed"], body["queued"]) == (0, 2)  # nothing signed in the request
    operation = SigningOperation.objects.get()
    assert body["operation"]["url"] == f"{API}/operations/{operation.pk}/"
    detail = client.get(body["operation"]["url"], **auth).json()
    assert {
        k: detail[k] for k in ("id", "kind", "state", "total", "pending", "signed", "failed")
    } == {
        "id": operation.pk,
        "kind": "sign",
        "state": "running",
        "total": 2,
        "pending": 2,
        "signed": 0,
        "failed": 0,
    }
    assert detail["created_at"]
    work(operation)
    detail = client.get(body["operation"]["url"], **auth).json()
    assert (detail["state"], detail["signed"], detail["pending"]) == ("finished", 2, 0)
    listed = client.get(f"{API}/operations/", {"kind": "sign"}, **auth).json()
    assert [row["id"] for row in listed["results"]] == [operation.pk]


def test_operations_are_scoped_like_signatures(client, instance, policy, registry, background):
    pushed(instance, registry, "v1")
    operation = start_signing(manifests=[Tag.objects.get().manifest]).operation
    elsewhere = registry_services.create_instance(
        name="elsewhere", backend_url="http://127.0.0.1:9", default_domain="e.example.com"
    )[0]
    outsider = make_user(is_staff=True)
    grant(outsider, elsewhere, role=Role.READER)
    reader = make_user(is_staff=True)
    grant(reader, instance, role=Role.READER)
    url = f"{API}/operations/{operation.pk}/"

    def get(user, path=url):
        return client.get(path, HTTP_AUTHORIZATION=f"Token {make_token(user)}")

    assert get(reader).status_code == 200
    assert get(outsider).status_code == 404
    assert get(outsider, f"{API}/operations/").json()["results"] == []
    assert get(make_user()).status_code == 403  # no membership, no permission
    assert client.get(url).status_code == 401
    client.force_login(outsider)
    progress = reverse("admin:signing_signingoperation_progress", args=[operation.pk])
    assert client.get(progress).status_code == 404


def test_the_operation_list_reads_its_counts_in_one_query(
    client, instance, policy, registry, background, superuser
):
    tags = pushed(instance, registry, "v1", "v2", "v3", "v4")
    auth = {"HTTP_AUTHORIZATION": f"Token {make_token(superuser)}"}

    def list_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert client.get(f"{API}/operations/", **auth).status_code == 200
        return len(queries)

    start_signing(manifests=[tags[0].manifest])
    few = list_queries()
    for tag in tags[1:]:
        start_signing(manifests=[tag.manifest])
    assert list_queries() == few


def test_the_periodic_retry_records_when_an_operation_finished(
    instance, policy, registry, background
):
    (tag,) = pushed(instance, registry, "v1")
    operation = start_signing(manifests=[tag.manifest]).operation
    services.retry_signatures()
    assert SigningOperation.objects.get().finished_at is None  # still pending

    work(operation)
    services.retry_signatures()

    operation.refresh_from_db()
    assert operation.finished_at is not None
    assert operation.finished_at >= operation.created_at


# --- policy deletion ----------------------------------------------------------------------


def test_deleting_a_policy_shows_the_artifact_removal_progress(
    admin_client, instance, policy, registry
):
    tags = pushed(instance, registry, "v1", "v2")
    services.request_signing(manifests=[t.manifest for t in tags])

    response = admin_client.post(
        reverse("admin:signing_signingpolicy_delete", args=[policy.pk]), {"post": "yes"}
    )

    operation = operation_of(response.url)
    assert operation.kind == OperationKind.DELETE_POLICY
    assert not SigningPolicy.objects.exists()
    assert progress_json(admin_client, operation)["pending"] == 2
    run_cleanups()
    data = progress_json(admin_client, operation)
    assert (data["state"], data["removed"], data["pending"]) == ("finished", 2, 0)
    assert all(sig_manifest(registry, "team/app", t.manifest.digest) is None for t in tags)


# --- point 5: after creating a policy, "Sign them now" -----------------------------------


def test_a_new_policy_offers_to_sign_the_existing_images(
    admin_client, instance, namespace, key, authorized, registry, background
):
    tags = pushed(instance, registry, "v1", "v2")

    created = admin_client.post(
        reverse("admin:signing_signingpolicy_add"),
        {"namespace": namespace.pk, "name": "team-policy", "key": str(key.pk), "domain": ""},
        follow=True,
    )

    policy = SigningPolicy.objects.get()
    change = reverse("admin:signing_signingpolicy_change", args=[policy.pk])
    assert created.redirect_chain[-1][0] == change
    page = created.content.decode()
    box = re.search(r'<div id="unsigned-images">(.*?)</div>', page, re.S).group(1)
    assert "2 existing images in team are unsigned" in " ".join(box.split())
    sign_existing = reverse("admin:signing_signingpolicy_sign_existing", args=[policy.pk])
    assert f'action="{sign_existing}"' in box
    assert re.search(r'<button type="submit" class="button" id="sign-existing">Sign them now<', box)
    assert "csrfmiddlewaretoken" in box
    assert admin_client.get(sign_existing).status_code == 405

    response = admin_client.post(sign_existing)

    operation = operation_of(response.url)
    assert (operation.kind, operation.policy) == (OperationKind.SIGN_EXISTING, policy)
    assert progress_json(admin_client, operation)["pending"] == 2
    assert 'id="unsigned-images"' not in admin_client.get(change).content.decode()
    work(operation)
    assert progress_json(admin_client, operation)["signed"] == 2
    assert all(sig_manifest(registry, "team/app", t.manifest.digest) for t in tags)


def test_sign_them_now_needs_the_sign_permission(client, instance, policy, registry, background):
    pushed(instance, registry, "v1")
    reader = make_user(is_staff=True, perms=["signing.view_signingpolicy"])
    grant(reader, instance, role=Role.READER)
    client.force_login(reader)

    page = client.get(reverse("admin:signing_signingpolicy_change", args=[policy.pk]))

    assert page.status_code == 200
    assert 'id="sign-existing"' not in page.content.decode()
    sign_existing = reverse("admin:signing_signingpolicy_sign_existing", args=[policy.pk])
    assert client.post(sign_existing).status_code == 403
    assert not SigningOperation.objects.exists()
    assert not Signature.objects.exists()
