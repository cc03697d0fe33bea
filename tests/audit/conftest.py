"""Fixtures for the audit tests: real services, the real local KMS, SQLite or PostgreSQL.

Signing is wired in as config/settings.py installs it; ``config.settings_test`` makes it
run inline.

- ``instance`` / ``instance_and_token`` (the root conftest's, with these
  ``instance_fields``): ``audited``, whose backend nothing listens on (the services never
  call it unless something signs), with a stored registry password ``REGISTRY_SECRET``.
- ``key``, ``authorized`` (the registry-signing grant), ``namespace``, ``policy``.
- ``live_instance``: an instance on a real docker-registry (``registry_server``).
"""

from __future__ import annotations

from typing import Any

import pytest

from kms import services as kms_services
from kms.models import AuthorizedService, Key
from registry import services as registry_services
from registry.models import Instance, Namespace
from signing import services as signing_services
from signing.models import SigningPolicy
from tests.audit.support import DOMAIN, NAMESPACE
from tests.factories import make_key
from tests.support.registry_server import free_port

REGISTRY_SECRET = "registry-password-Zq81-do-not-log"


@pytest.fixture
def instance_fields() -> dict[str, Any]:
    return {
        "name": "audited",
        "backend_url": f"http://127.0.0.1:{free_port()}",
        "default_domain": DOMAIN,
        "auth_type": "basic",
        "username": "robot",
        "secret": REGISTRY_SECRET,
    }


@pytest.fixture
def namespace(instance: Instance) -> Namespace:
    return registry_services.create_namespace(instance=instance, name=NAMESPACE)


@pytest.fixture
def key(db) -> Key:
    return make_key("audit-signing")


@pytest.fixture
def authorized(db):
    return kms_services.grant_service_authorization(
        service=AuthorizedService.REGISTRY_SIGNING, note="audit tests"
    )


@pytest.fixture
def policy(namespace: Namespace, key: Key, authorized) -> SigningPolicy:
    return signing_services.create_policy(namespace=namespace, name="team-policy", key=key).policy


@pytest.fixture
def live_instance(db, registry_server) -> Instance:
    instance, _ = registry_services.create_instance(
        name="live", backend_url=registry_server.url, default_domain=DOMAIN
    )
    return instance
