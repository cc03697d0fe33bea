"""Fixtures for the API documentation and robustness tests.

- ``admin_token`` / ``viewer_token``: API tokens of a superuser and of a read-only
  sub-account (the ``view_*`` permissions of every API object, nothing else).
- ``no_throttling``: switches the rate limits off (``ScopedRateThrottle`` reads its rates
  when DRF is imported, so they are swapped on the class, then restored).
- ``seeded``: one object of each kind, so fuzzed requests reach more than 404s: a key,
  an instance whose registry is not running (a free loopback port), a namespace, a
  repository with a tag, and a signing policy.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache
from rest_framework.throttling import ScopedRateThrottle

from tests.factories import make_key, make_token, make_user

VIEW_PERMISSIONS = [
    "kms.view_key",
    "kms.view_serviceauthorization",
    "registry.view_instance",
    "registry.view_namespace",
    "registry.view_repository",
    "registry.view_tag",
    "registry.view_manifest",
    "signing.view_signingpolicy",
    "signing.view_signature",
    "audit.view_auditevent",
]


@pytest.fixture
def admin_user(db):
    return make_user("api-admin", is_staff=True, is_superuser=True)


@pytest.fixture
def admin_token(admin_user) -> str:
    return make_token(admin_user)


@pytest.fixture
def viewer_token(db) -> str:
    return make_token(make_user("api-viewer", perms=VIEW_PERMISSIONS))


def auth(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Token {token}"}


@pytest.fixture
def set_throttle_rates() -> Iterator[Any]:
    """``set_throttle_rates({"verify": "2/min"})``; the counters start empty."""
    original = ScopedRateThrottle.THROTTLE_RATES

    def apply(rates: dict[str, str | None]) -> None:
        ScopedRateThrottle.THROTTLE_RATES = {**original, **rates}
        cache.clear()

    yield apply
    ScopedRateThrottle.THROTTLE_RATES = original
    cache.clear()


@pytest.fixture
def no_throttling(set_throttle_rates) -> None:
    set_throttle_rates(dict.fromkeys(ScopedRateThrottle.THROTTLE_RATES))


@pytest.fixture
def seeded(db, admin_user) -> dict[str, Any]:
    from django.utils import timezone

    from kms import services as kms_services
    from kms.models import AuthorizedService
    from registry import services as registry_services
    from registry.models import Manifest, Namespace, Repository, Tag
    from signing import services as signing_services
    from tests.support.registry_server import free_port

    kms_services.grant_service_authorization(
        service=AuthorizedService.REGISTRY_SIGNING, granted_by=admin_user, note="fuzzing"
    )
    key = make_key("fuzz-key")
    instance, webhook_token = registry_services.create_instance(
        name="fuzz",
        backend_url=f"http://127.0.0.1:{free_port()}",
        default_domain="fuzz.signet.test",
    )
    namespace = Namespace.objects.create(instance=instance, name="team")
    repository = Repository.objects.create(namespace=namespace, name="team/app")
    manifest = Manifest.objects.create(
        repository=repository,
        digest="sha256:" + "a" * 64,
        media_type="application/vnd.oci.image.manifest.v1+json",
        size=100,
        pushed_at=timezone.now(),
    )
    now = timezone.now()
    tag = Tag.objects.create(
        repository=repository, name="v1", manifest=manifest, pushed_at=now, updated_at=now
    )
    policy = signing_services.create_policy(
        namespace=namespace, name="fuzz-policy", key=key, created_by=admin_user
    ).policy
    return {
        "key": key,
        "instance": instance,
        "webhook_token": webhook_token,
        "namespace": namespace,
        "repository": repository,
        "manifest": manifest,
        "tag": tag,
        "policy": policy,
    }
