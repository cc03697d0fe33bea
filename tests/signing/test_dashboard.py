"""The admin home (issue 12, point 6): the signing overview per instance and namespace,
the recent failures with their reasons, the work under way, scoped to what the user may
see, in a fixed number of queries; the apps in the order of the job; "View site" leads
out of the admin."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import Role
from kms import services as kms_services
from registry import services as registry_services
from signing import services
from signing.admin.operation import progress_url
from signing.models import Signature, SignatureStatus, SigningOperation
from signing.services.operations import start_signing
from tests.accounts.support import grant
from tests.factories import make_user
from tests.signing.conftest import REPOSITORY, envelope, push_event

pytestmark = pytest.mark.django_db

HOME = reverse("admin:index")
MISSING = "sha256:" + "0" * 64


def overview_rows(body: str) -> dict[str, str]:
    """Each ``tr.overview-row`` by its ``instance/namespace``."""
    return dict(
        re.findall(r'<tr class="overview-row" data-namespace="([^"]+)">(.*?)</tr>', body, re.S)
    )


def count(row: str, name: str) -> int:
    found = re.search(rf'data-count="{name}">(\d+)<', row)
    assert found, f"no {name} count in {row}"
    return int(found.group(1))


@pytest.fixture
def job(instance, namespace, policy, push_image_event):
    """team: one image signed, one waiting, one failed (the registry does not hold it);
    other (no policy): one image."""
    signed = push_image_event(tag="v1", seed="signed")
    services.sign_signature(Signature.objects.get(manifest__digest=signed.digest).pk)
    push_image_event(tag="v2", seed="waiting")
    registry_services.record_events(
        instance=instance, envelope=envelope(push_event(REPOSITORY, MISSING, tag="gone"))
    )
    services.sign_signature(Signature.objects.get(manifest__digest=MISSING).pk)
    registry_services.create_namespace(instance=instance, name="other")
    push_image_event("other/tool", tag="v1", seed="other")
    assert Signature.objects.filter(status=SignatureStatus.FAILED).count() == 1


def test_the_home_page_shows_each_namespace_with_its_policy_and_counts(admin_client, job, key):
    body = admin_client.get(HOME).content.decode()
    rows = overview_rows(body)

    assert 'id="signing-overview"' in body
    assert set(rows) == {"signet/team", "signet/other"}
    team, other = rows["signet/team"], rows["signet/other"]
    assert 'data-status="enabled"' in team and "team-policy" in team
    assert f"{key.alias} <span" in team and "(Enabled)" in team
    assert "Signing new pushes." in team
    assert [count(team, n) for n in ("signed", "unsigned", "pending", "failed")] == [1, 0, 1, 1]
    assert 'data-status="none"' in other and "No signing policy" in other
    assert [count(other, n) for n in ("signed", "unsigned", "pending", "failed")] == [0, 1, 0, 0]


def test_the_home_page_lists_recent_failures_with_their_reason(admin_client, job):
    body = admin_client.get(HOME).content.decode()
    failures = body[body.index('id="recent-failures"') :]
    failed = Signature.objects.get(status=SignatureStatus.FAILED)

    assert f"{REPOSITORY}:gone" in failures
    assert failed.failure_reason and failed.failure_reason[:40] in failures
    assert (
        f'href="{reverse("admin:signing_signature_changelist")}?status__exact=failed"' in failures
    )


def test_the_home_page_shows_the_work_under_way(admin_client, job):
    body = admin_client.get(HOME).content.decode()
    work = re.search(r'<p id="work-in-progress">(.*?)</p>', body, re.S)

    assert work and '<strong data-count="pending">1</strong> image waiting' in work.group(1)


def test_a_key_or_grant_problem_shows_in_the_health(admin_client, job, key, authorized):
    kms_services.disable_key(key_id=str(key.key_id))
    kms_services.revoke_service_authorization(service=authorized.service)

    body = admin_client.get(HOME).content.decode()
    team = overview_rows(body)["signet/team"]

    assert "(Disabled)" in team and "is Disabled: new images are not signed" in team
    assert 'id="service-not-authorized"' in body


def test_the_query_count_does_not_grow_with_the_namespaces(admin_client, job, instance, key):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(HOME).status_code == 200
        return len(captured)

    before = queries()
    for number in range(5):
        more = registry_services.create_namespace(instance=instance, name=f"more{number}")
        services.create_policy(namespace=more, name=f"more{number}-policy", key=key)

    assert queries() == before
    assert len(overview_rows(admin_client.get(HOME).content.decode())) == 7


def test_a_member_sees_only_the_namespaces_of_their_membership(client, job, instance, namespace):
    member = make_user("member", is_staff=True)
    grant(member, instance, role=Role.READER, namespaces=[namespace])
    client.force_login(member)

    body = client.get(HOME).content.decode()

    assert set(overview_rows(body)) == {"signet/team"}  # not signet/other


def test_the_apps_are_listed_in_the_order_of_the_job(admin_client):
    body = admin_client.get(HOME).content.decode()
    apps = re.findall(r'<div class="app-(\w+) module', body)

    assert apps[:3] == ["signing", "registry", "kms"]
    assert apps.index("accounts") < apps.index("audit")
    assert apps[-1] == "audit"


def test_view_site_does_not_lead_back_to_the_admin(admin_client):
    body = admin_client.get(HOME).content.decode()
    link = re.search(r'<a href="([^"]*)">View site</a>', body)

    assert link and link.group(1) == reverse("api-docs")


def test_work_in_progress_lists_the_running_operations_with_their_counts(
    admin_client, job, settings
):
    settings.SIGNING_DISPATCH = "thread"  # handed to the pool on commit: still pending here
    waiting = Signature.objects.get(status=SignatureStatus.PENDING).manifest
    operation = start_signing(manifests=[waiting]).operation

    body = admin_client.get(HOME).content.decode()

    running = re.search(r'<ul id="running-operations">(.*?)</ul>', body, re.S)
    assert running, "no running operation listed under work in progress"
    assert f'href="{progress_url(operation)}"' in running.group(1)
    assert f"#{operation.pk} in team" in running.group(1)
    assert "0/1 done" in running.group(1)


def test_an_operation_with_nothing_pending_is_not_listed_as_work_in_progress(
    admin_client, job, settings
):
    settings.SIGNING_DISPATCH = "thread"
    waiting = Signature.objects.get(status=SignatureStatus.PENDING).manifest
    operation = start_signing(manifests=[waiting]).operation
    assert 'id="running-operations"' in admin_client.get(HOME).content.decode()
    services.sign_signature(Signature.objects.get(manifest=waiting).pk)  # the worker's pass
    assert 'id="running-operations"' not in admin_client.get(HOME).content.decode()
    SigningOperation.objects.filter(pk=operation.pk).update(finished_at=timezone.now())
    assert 'id="running-operations"' not in admin_client.get(HOME).content.decode()
