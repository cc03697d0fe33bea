"""Fixtures every test directory shares.

- ``superuser`` (``admin_user`` is the same user: ``root``) and ``admin_client``, a Django
  test client logged in as it (pytest-django's ``admin_client`` with our ``admin_user``).
- ``superuser_client``: a DRF client with an API token of another superuser.
- ``instance_and_token`` (and ``instance``, ``webhook_token``): the registry instance
  ``registry.services.create_instance(**instance_fields)`` returns. The default
  ``instance_fields`` make ``prod`` on a backend nothing listens on; a directory's conftest
  overrides ``instance_fields`` (a real registry for signing, stored credentials for audit).
- Autouse: an empty private-key cache, and RSA keys from a per-process pool
  (``tests/support/key_pool.py``) instead of a fresh 2048-bit key per ``create_key``.

The real registry fixtures are in ``tests/support/registry_fixtures.py``, the live server's
in ``tests/support/live_signet.py``, the Celery broker's and workers' in
``tests/support/celery_worker.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from kms import crypto
from kms.services import material
from registry import services as registry_services
from registry.models import Instance
from tests.factories import instance_defaults, make_user, token_client
from tests.support.key_pool import POOL

pytest_plugins = [
    "tests.support.registry_fixtures",
    "tests.support.live_signet",
    "tests.support.gunicorn",
    "tests.support.celery_worker",
]


@pytest.fixture(autouse=True)
def _fresh_key_cache() -> Iterator[None]:
    """Each test starts with an empty private-key cache (it is per process)."""
    material.key_cache.clear()
    yield
    material.key_cache.clear()


@pytest.fixture(autouse=True)
def _pooled_rsa_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    generate = crypto.generate_private_key

    def pooled(key_spec: str) -> crypto.PrivateKey:
        return POOL.take() if key_spec == "RSA_2048" else generate(key_spec)

    POOL.start_test()
    monkeypatch.setattr(crypto, "generate_private_key", pooled)


# --- users and clients ----------------------------------------------------------------------


@pytest.fixture
def superuser(db: None) -> Any:
    return get_user_model().objects.create_superuser("root", "root@example.com", "pw-for-tests")


@pytest.fixture
def admin_user(superuser: Any) -> Any:
    """pytest-django's ``admin_client`` logs this user in."""
    return superuser


@pytest.fixture
def superuser_client(db: None) -> APIClient:
    return token_client(make_user(is_superuser=True, is_staff=True))


# --- a registry instance --------------------------------------------------------------------


@pytest.fixture
def instance_fields() -> dict[str, Any]:
    """The ``create_instance`` arguments of ``instance_and_token``."""
    return instance_defaults("prod")


@pytest.fixture
def instance_and_token(db: None, instance_fields: dict[str, Any]) -> tuple[Instance, str]:
    return registry_services.create_instance(**instance_fields)


@pytest.fixture
def instance(instance_and_token: tuple[Instance, str]) -> Instance:
    return instance_and_token[0]


@pytest.fixture
def webhook_token(instance_and_token: tuple[Instance, str]) -> str:
    return instance_and_token[1]
