"""Signing: policy changes, every sign request (manual, backfill, retry, re-sign) with its
scope and counts, and each signing failure."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from kms import services as kms_services
from kms.models import AuthorizedService
from registry import services as registry_services
from registry.models import Manifest
from signing import services as signing_services
from signing.dispatch import wait_for_background_work
from signing.models import Signature, SignatureStatus, SigningPolicy
from tests.accounts.support import grant
from tests.audit.support import (
    NAMESPACE,
    REPOSITORY,
    actions,
    events,
    fake_digest,
    record_push,
    the_event,
    token_client,
)
from tests.factories import make_key, make_user
from tests.support.oci import push_image

REGISTRY = AuthorizedService.REGISTRY_SIGNING
SIGNER_PERMS = [
    "signing.sign_images",
    "signing.view_signingpolicy",
    "signing.view_signature",
    "signing.add_signingpolicy",
    "signing.change_signingpolicy",
    "signing.delete_signingpolicy",
]


class _Sink:
    def write(self, text: str) -> None:
        pass

    def flush(self) -> None:
        pass


@pytest.fixture
def live_policy(live_instance, key, authorized) -> SigningPolicy:
    namespace = registry_services.create_namespace(instance=live_instance, name=NAMESPACE)
    return signing_services.create_policy(namespace=namespace, name="live-policy", key=key).policy


def push_real(registry_client, instance, tag: str) -> Manifest:
    digest = push_image(registry_client, REPOSITORY, tag, seed=f"audit-{tag}")
    return record_push(instance, REPOSITORY, tag, digest)


def offline_manifests(instance, *tags: str) -> list[Manifest]:
    return [record_push(instance, REPOSITORY, tag, fake_digest(tag)) for tag in tags]


# --- policies ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_creating_a_policy_records_its_key_and_domain(namespace, key, authorized):
    creator = make_user("creator")

    policy = signing_services.create_policy(
        namespace=namespace, name="created-policy", key=key, created_by=creator
    ).policy

    event = the_event("signing.policy.created")
    assert (event.object_type, event.object_id, event.object_repr) == (
        "signing.signingpolicy",
        str(policy.pk),
        "created-policy",
    )
    assert (event.actor_id, event.instance_name, event.namespace_name) == (
        creator.pk,
        "audited",
        NAMESPACE,
    )
    assert event.details == {
        "namespace": NAMESPACE,
        "key_id": str(key.key_id),
        "key_alias": key.alias,
        "domain": policy.domain,
        "kms_region": key.region,
        "disabled": False,
    }


@pytest.mark.django_db
def test_changing_a_policy_records_the_changed_fields_before_and_after(policy, key):
    other = make_key("audit-signing-2")

    signing_services.update_policy(policy=policy, name="renamed-policy", key=other)

    event = the_event("signing.policy.changed")
    assert event.changes == {
        "name": ["team-policy", "renamed-policy"],
        "key_id": [str(key.key_id), str(other.key_id)],
        "key_alias": [key.alias, other.alias],
    }
    assert (event.object_id, event.instance_name, event.namespace_name) == (
        str(policy.pk),
        "audited",
        NAMESPACE,
    )


@pytest.mark.django_db
def test_disabling_a_policy_is_recorded_as_disabled_and_a_no_op_change_not_at_all(policy):
    signing_services.update_policy(policy=policy, disabled=True)
    signing_services.update_policy(policy=policy, disabled=True)  # no change: no event
    signing_services.update_policy(policy=policy, name=policy.name)  # no change either
    signing_services.update_policy(policy=policy, disabled=False)

    assert the_event("signing.policy.disabled").changes == {"disabled": [False, True]}
    assert the_event("signing.policy.changed").changes == {"disabled": [True, False]}
    assert the_event("signing.policy.disabled").namespace_name == NAMESPACE


@pytest.mark.django_db
def test_a_refused_policy_change_records_nothing(policy):
    before = actions()

    with pytest.raises(Exception, match="Policy name"):
        signing_services.update_policy(policy=policy, name="Not A Valid Name!")

    assert actions() == before
    assert SigningPolicy.objects.get(pk=policy.pk).name == "team-policy"


@pytest.mark.django_db
def test_deleting_a_policy_records_how_many_signatures_went_with_it(instance, policy):
    offline_manifests(instance, "v1", "v2")  # the push hook makes two pending rows
    assert Signature.objects.filter(policy=policy).count() == 2

    removed = signing_services.delete_policy(policy=policy)

    event = the_event("signing.policy.deleted")
    assert removed == 2
    assert event.details["signatures_removed"] == 2
    assert (event.object_id, event.object_repr, event.instance_name, event.namespace_name) == (
        str(policy.pk),
        "team-policy",
        "audited",
        NAMESPACE,
    )
    assert not SigningPolicy.objects.filter(pk=policy.pk).exists()


@pytest.mark.django_db
def test_api_policy_changes_are_recorded_for_the_token_user(instance, namespace, key, authorized):
    operator = make_user("operator", perms=SIGNER_PERMS)
    grant(operator, instance)
    api = token_client(operator, REMOTE_ADDR="203.0.113.30")

    created = api.post(
        "/api/v1/signing/policies/",
        {
            "instance": instance.name,
            "namespace": NAMESPACE,
            "name": "api-policy",
            "key": str(key.key_id),
        },
        format="json",
    )
    policy_id = created.json()["id"]
    patched = api.patch(f"/api/v1/signing/policies/{policy_id}/", {"disabled": True}, format="json")
    deleted = api.delete(f"/api/v1/signing/policies/{policy_id}/")

    assert (created.status_code, patched.status_code, deleted.status_code) == (201, 200, 200)
    recorded = events(object_type="signing.signingpolicy")
    assert [event.action for event in recorded] == [
        "signing.policy.created",
        "signing.policy.disabled",
        "signing.policy.deleted",
    ]
    for event in recorded:
        assert (event.actor_type, event.actor_id, event.source_ip) == (
            "user",
            operator.pk,
            "203.0.113.30",
        )
    assert recorded[2].details["signatures_removed"] == 0


@pytest.mark.django_db
def test_admin_policy_deletion_is_recorded_for_the_session_user(admin_client, admin_user, policy):
    response = admin_client.post(
        reverse("admin:signing_signingpolicy_delete", args=[policy.pk]), {"post": "yes"}
    )

    assert response.status_code == 302
    event = the_event("signing.policy.deleted")
    assert (event.actor_id, event.source_ip) == (admin_user.pk, "127.0.0.1")
    assert not SigningPolicy.objects.filter(pk=policy.pk).exists()


# --- sign requests ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_manual_sign_request_records_its_scope_and_counts(
    live_instance, live_policy, registry_client
):
    push_real(registry_client, live_instance, "v1")
    push_real(registry_client, live_instance, "v2")
    signer = make_user("signer", perms=SIGNER_PERMS)
    grant(signer, live_instance)
    api = token_client(signer, REMOTE_ADDR="203.0.113.40")
    body = {"instance": "live", "namespace": NAMESPACE}

    first = api.post("/api/v1/signing/sign/", body, format="json")
    again = api.post("/api/v1/signing/sign/", body, format="json")

    assert (first.status_code, again.status_code) == (200, 200)
    requested = events("signing.sign.requested")
    assert len(requested) == 2
    for event in requested:
        assert (event.actor_type, event.actor_id, event.source_ip) == (
            "user",
            signer.pk,
            "203.0.113.40",
        )
        assert (event.object_type, event.object_id) == (
            "signing.signingpolicy",
            str(live_policy.pk),
        )
        assert (event.instance_name, event.namespace_name) == ("live", NAMESPACE)
    common = {
        "trigger": "manual",
        "instances": ["live"],
        "namespaces": [NAMESPACE],
        "repositories": [REPOSITORY],
        "manifests": 2,
        "no_policy": 0,
        "failed": 0,
        "skipped": 0,
        "signed": 0,
    }
    # Issue 12: a request signs nothing itself; it starts an operation and queues the
    # images for the workers (inline in tests: signed by the time the test looks).
    operations = [event.details["operation"] for event in requested]
    assert requested[0].details == {
        **common,
        "already_signed": 0,
        "queued": 2,
        "operation": operations[0],
    }
    assert requested[1].details == {
        **common,
        "already_signed": 2,
        "queued": 0,
        "operation": operations[1],
    }
    assert events("signing.signature.failed") == []
    assert Signature.objects.filter(status=SignatureStatus.SIGNED).count() == 2


@pytest.mark.django_db
def test_sign_failures_are_recorded_once_each_for_the_requesting_user(
    live_instance, live_policy, registry_client
):
    # Real images: the registry is asked first, so the KMS refusal is what fails them.
    push_real(registry_client, live_instance, "v1")
    push_real(registry_client, live_instance, "v2")
    kms_services.revoke_service_authorization(service=REGISTRY)
    signer = make_user("signer", perms=SIGNER_PERMS)
    grant(signer, live_instance)
    before = actions()

    response = token_client(signer).post(
        "/api/v1/signing/sign/",
        {"instance": live_instance.name, "namespace": NAMESPACE},
        format="json",
    )

    assert response.status_code == 200, response.content
    assert actions()[len(before) :] == [
        "signing.signature.failed",
        "signing.signature.failed",
        "signing.sign.requested",
    ]
    failed = events("signing.signature.failed")
    assert {event.object_id for event in failed} == {
        str(pk) for pk in Signature.objects.values_list("pk", flat=True)
    }
    for event in failed:
        assert (event.actor_type, event.actor_id) == ("user", signer.pk)
        assert event.details["code"] == "UnauthorizedOperation.ServiceNotAuthorized"
        assert event.details["trigger"] == "manual"
        assert event.details["attempts"] == 1
        assert "not authorized" in event.details["reason"]
        assert (event.instance_name, event.namespace_name) == (live_instance.name, NAMESPACE)
    requested = the_event("signing.sign.requested")
    # Issue 12: the request queues them (the failures are the workers', recorded above).
    assert (requested.details["queued"], requested.details["signed"]) == (2, 0)
    assert (requested.instance_name, requested.namespace_name) == (live_instance.name, NAMESPACE)


@pytest.mark.django_db(transaction=True)
def test_failures_in_background_work_are_recorded_as_the_system(settings, instance, namespace, key):
    offline_manifests(instance, "v1")  # before the policy: the push itself signs nothing
    kms_services.grant_service_authorization(service=REGISTRY)
    signing_services.create_policy(namespace=namespace, name="team-policy", key=key)
    kms_services.revoke_service_authorization(service=REGISTRY)
    settings.SIGNING_DISPATCH = "thread"
    requester = make_user("requester")

    result = signing_services.request_signing(
        manifests=list(Manifest.objects.all()), actor=requester, synchronous_limit=0
    )
    assert wait_for_background_work()

    assert result.queued == 1
    requested = the_event("signing.sign.requested")
    assert (requested.actor_id, requested.details["queued"]) == (requester.pk, 1)
    failed = the_event("signing.signature.failed")
    assert (failed.actor_type, failed.actor_label, failed.actor_id) == ("system", "system", None)
    assert Signature.objects.get().status == SignatureStatus.FAILED


@pytest.mark.django_db
def test_retrying_now_records_the_retry_with_its_counts(instance, policy):
    offline_manifests(instance, "v1")
    kms_services.revoke_service_authorization(service=REGISTRY)
    signing_services.request_signing(manifests=list(Manifest.objects.all()))
    signer = make_user("retrier", perms=SIGNER_PERMS)
    grant(signer, instance)
    before = len(actions())

    response = token_client(signer).post(f"/api/v1/signing/policies/{policy.pk}/retry/")

    assert response.status_code == 200
    assert actions()[before:] == ["signing.signature.failed", "signing.sign.requested"]
    retry = events("signing.sign.requested")[-1]
    signature = Signature.objects.get()
    assert retry.details == {
        "trigger": "retry",
        "instances": ["audited"],
        "signatures": 1,
        "signature_ids": [signature.pk],
        "signed": 0,
        "failed": 0,
        "skipped": 0,
        "queued": 1,  # issue 12: handed to the workers, not signed in the request
        "operation": retry.details["operation"],
    }
    assert (retry.object_id, retry.actor_id) == (str(policy.pk), signer.pk)
    assert (retry.instance_name, retry.namespace_name) == ("audited", NAMESPACE)


@pytest.mark.django_db
def test_events_about_several_namespaces_name_none_of_them(instance, policy, key):
    ops = registry_services.create_namespace(instance=instance, name="ops")
    signing_services.create_policy(namespace=ops, name="ops-policy", key=key)
    kms_services.revoke_service_authorization(service=REGISTRY)
    team_manifest = record_push(instance, REPOSITORY, "v1", fake_digest("team-v1"))
    ops_manifest = record_push(instance, "ops/app", "v1", fake_digest("ops-v1"))
    before = len(actions())

    signing_services.request_signing(manifests=[team_manifest, ops_manifest])
    signing_services.retry_now(signatures=Signature.objects.all())
    signing_services.retry_now(signatures=Signature.objects.filter(policy__namespace=ops))

    recorded = events()[before:]
    failed = [event for event in recorded if event.action == "signing.signature.failed"]
    requests = [event for event in recorded if event.action == "signing.sign.requested"]
    # Each failure is about one signature, so one namespace.
    assert sorted(event.namespace_name for event in failed) == [
        "ops",
        "ops",
        "ops",
        NAMESPACE,
        NAMESPACE,
    ]
    # The request and the retry of both namespaces: the instance, no single namespace;
    # the retry of ops' signature alone: ops.
    assert [(e.details["trigger"], e.instance_name, e.namespace_name) for e in requests] == [
        ("manual", "audited", ""),
        ("retry", "audited", ""),
        ("retry", "audited", "ops"),
    ]
    assert requests[0].details["namespaces"] == ["ops", NAMESPACE]


@pytest.mark.django_db
def test_retrying_nothing_records_nothing(policy):
    before = actions()

    signing_services.retry_now(signatures=[])
    signing_services.retry_signatures()

    assert actions() == before


@pytest.mark.django_db
def test_the_retry_command_is_recorded_as_the_command(instance, policy):
    offline_manifests(instance, "v1")
    kms_services.revoke_service_authorization(service=REGISTRY)
    signing_services.request_signing(manifests=list(Manifest.objects.all()))
    Signature.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    before = len(actions())

    call_command("retry_signatures", stdout=_Sink(), stderr=_Sink())

    assert actions()[before:] == ["signing.signature.failed", "signing.sign.requested"]
    for event in events()[before:]:
        assert (event.actor_type, event.actor_label) == ("command", "manage.py retry_signatures")
    assert events()[-1].details["trigger"] == "scheduled-retry"
    assert events()[-1].details["failed"] == 1


@pytest.mark.django_db
def test_the_backfill_command_is_recorded_as_the_command(
    live_instance, live_policy, registry_client
):
    manifest = push_real(registry_client, live_instance, "v1")

    call_command("backfill_signatures", "--instance", "live", stdout=_Sink(), stderr=_Sink())

    event = the_event("signing.sign.requested")
    assert (event.actor_type, event.actor_label, event.actor_id) == (
        "command",
        "manage.py backfill_signatures",
        None,
    )
    assert event.details["trigger"] == "backfill"
    assert (event.details["manifests"], event.details["signed"]) == (1, 1)
    assert Signature.objects.get(manifest=manifest).status == SignatureStatus.SIGNED


@pytest.mark.django_db
def test_a_failing_backfill_is_recorded_too(instance, policy):
    offline_manifests(instance, "v1")
    kms_services.revoke_service_authorization(service=REGISTRY)

    with pytest.raises(CommandError, match="failed to sign"):
        call_command(
            "backfill_signatures", "--instance", instance.name, stdout=_Sink(), stderr=_Sink()
        )

    event = the_event("signing.sign.requested")
    assert (event.actor_type, event.details["trigger"], event.details["failed"]) == (
        "command",
        "backfill",
        1,
    )
    assert the_event("signing.signature.failed").actor_label == "manage.py backfill_signatures"


@pytest.mark.django_db
def test_a_resign_request_records_the_policy_and_counts(
    live_instance, live_policy, registry_client
):
    push_real(registry_client, live_instance, "v1")
    signing_services.request_signing(manifests=list(Manifest.objects.all()))
    signing_services.update_policy(policy=live_policy, key=make_key("rotated-key"))
    operator = make_user("operator", perms=SIGNER_PERMS)
    grant(operator, live_instance)

    response = token_client(operator).post(f"/api/v1/signing/policies/{live_policy.pk}/resign/")

    assert response.status_code == 200
    resign = events("signing.sign.requested")[-1]
    assert resign.details["trigger"] == "resign"
    # Issue 12: queued for the workers, not signed in the request.
    assert (resign.details["manifests"], resign.details["queued"]) == (1, 1)
    assert (resign.object_id, resign.actor_id) == (str(live_policy.pk), operator.pk)
    assert actions().count("signing.sign.requested") == 2
