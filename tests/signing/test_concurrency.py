"""Races: several threads, each with its own database connection, doing the same thing.

These run on SQLite and on PostgreSQL. On PostgreSQL (``DATABASE_URL`` pointing at it)
the threads really overlap inside the database, so the unique constraints and the
claim on a signature row are what keep the outcome right.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connections, transaction

from registry import services as registry_services
from signing import services
from signing.errors import PolicyExists
from signing.models import Signature, SignatureStatus, SigningPolicy
from signing.payload import signature_tag
from tests.signing.conftest import REPOSITORY, layer_fingerprints, manifest

pytestmark = [
    pytest.mark.registry_server,
    pytest.mark.django_db(transaction=True),
]

THREADS = 6


def run_concurrently(count: int, work: Callable[[int], Any]) -> list[tuple[str, Any]]:
    """Start ``count`` threads at the same moment; ("ok", result) or ("error", exception)."""
    barrier = threading.Barrier(count)
    outcomes: list[tuple[str, Any]] = [("missing", None)] * count

    def run(number: int) -> None:
        try:
            barrier.wait(timeout=30)
            outcomes[number] = ("ok", work(number))
        except Exception as exc:  # collected and asserted on by the test
            outcomes[number] = ("error", exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a thread did not finish"
    return outcomes


def test_two_threads_creating_a_policy_for_one_namespace_leave_exactly_one(
    namespace, key, other_key, authorized
):
    keys = [key, other_key]

    outcomes = run_concurrently(
        2,
        lambda n: (
            services.create_policy(namespace=namespace, name=f"policy-{n}", key=keys[n]).policy.pk
        ),
    )

    succeeded = [value for kind, value in outcomes if kind == "ok"]
    failed = [value for kind, value in outcomes if kind == "error"]
    assert len(succeeded) == 1, outcomes
    assert len(failed) == 1 and isinstance(failed[0], PolicyExists), outcomes
    assert failed[0].http_status == 409
    [policy] = SigningPolicy.objects.all()
    assert policy.pk == succeeded[0]
    assert policy.namespace == namespace


def test_many_threads_creating_policies_for_several_namespaces_get_one_each(
    instance, key, authorized
):
    namespaces = [
        registry_services.create_namespace(instance=instance, name=f"ns{n}") for n in range(3)
    ]

    outcomes = run_concurrently(
        THREADS,
        lambda n: (
            services.create_policy(
                namespace=namespaces[n % 3], name=f"policy-{n}", key=key
            ).policy.namespace_id
        ),
    )

    winners = sorted(value for kind, value in outcomes if kind == "ok")
    errors = [value for kind, value in outcomes if kind == "error"]
    assert winners == sorted(ns.pk for ns in namespaces), outcomes
    assert len(errors) == THREADS - 3
    assert all(isinstance(error, PolicyExists) for error in errors), errors
    assert sorted(SigningPolicy.objects.values_list("namespace_id", flat=True)) == winners


def _assert_signed_once(registry, key, digest: str) -> None:
    [row] = Signature.objects.all()
    assert row.manifest.digest == digest
    assert row.status == SignatureStatus.SIGNED
    assert row.attempts == 1  # the KMS signed it once: one worker claimed the row
    assert layer_fingerprints(registry, REPOSITORY, digest) == [key.public_key_fingerprint]
    assert registry.head_manifest(REPOSITORY, signature_tag(digest)).digest == (
        row.sig_manifest_digest
    )


def test_many_threads_requesting_one_signature_sign_it_once(
    namespace, key, authorized, registry, push_image_event
):
    pushed = push_image_event(tag="v1")  # before the policy: nothing signed yet
    services.create_policy(namespace=namespace, name="late", key=key)
    target = manifest(pushed.digest)

    outcomes = run_concurrently(
        THREADS, lambda n: services.request_signing(manifests=[target]).outcome
    )

    assert all(kind == "ok" for kind, _ in outcomes), outcomes
    results = [value for _, value in outcomes]
    assert sum(r.signed for r in results) == 1, results
    assert sum(r.failed for r in results) == 0, results
    _assert_signed_once(registry, key, pushed.digest)


def test_many_push_hooks_for_one_manifest_sign_it_once(
    namespace, key, instance, authorized, registry, push_image_event
):
    pushed = push_image_event(tag="v1")  # recorded before the policy: no row yet
    services.create_policy(namespace=namespace, name="late", key=key)
    target = manifest(pushed.digest)

    def hook(_number: int) -> None:
        with transaction.atomic():
            services.on_manifests_pushed(
                instance=instance, manifests=[target], tags=[], source="webhook"
            )

    outcomes = run_concurrently(THREADS, hook)

    assert all(kind == "ok" for kind, _ in outcomes), outcomes
    _assert_signed_once(registry, key, pushed.digest)


def test_requests_and_push_hooks_racing_for_one_manifest_sign_it_once(
    namespace, key, instance, authorized, registry, push_image_event
):
    pushed = push_image_event(tag="v1")
    services.create_policy(namespace=namespace, name="late", key=key)
    target = manifest(pushed.digest)

    def either(number: int) -> None:
        if number % 2:
            services.request_signing(manifests=[target])
            return
        with transaction.atomic():
            services.on_manifests_pushed(
                instance=instance, manifests=[target], tags=[], source="webhook"
            )

    outcomes = run_concurrently(THREADS, either)

    assert all(kind == "ok" for kind, _ in outcomes), outcomes
    _assert_signed_once(registry, key, pushed.digest)


def test_a_request_made_inside_a_transaction_is_signed_in_the_background_after_commit(
    namespace, key, authorized, registry, settings, push_image_event
):
    # Admin actions and API views may call request_signing inside a transaction: the rows
    # it writes are only visible to the background pool once that transaction commits.
    from signing.dispatch import wait_for_background_work

    pushed = [push_image_event(tag=f"v{n}", seed=f"s{n}") for n in range(3)]
    services.create_policy(namespace=namespace, name="late", key=key)
    settings.SIGNING_DISPATCH = "thread"

    with transaction.atomic():
        result = services.request_signing(
            manifests=[manifest(p.digest) for p in pushed], synchronous_limit=1
        )
        assert result.queued == 2
        time.sleep(0.5)  # the rest of the caller's work, still inside its transaction

    assert wait_for_background_work(timeout=30)
    assert Signature.objects.filter(status=SignatureStatus.SIGNED).count() == 3
    for p in pushed:
        assert layer_fingerprints(registry, REPOSITORY, p.digest) == [key.public_key_fingerprint]
