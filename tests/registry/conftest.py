"""Fixtures for the registry tests (``instance``, ``instance_and_token`` and
``webhook_token`` come from the root conftest: ``prod`` on a dead backend).

``make_instance`` and ``token_client`` live in ``tests.factories``; many tests import them
from here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from registry.models import (
    Instance,
    InstanceDomain,
    Manifest,
    ManifestReference,
    Namespace,
    RegistryEvent,
    Repository,
    Tag,
    TagHistory,
)
from tests.accounts.support import grant
from tests.factories import (
    make_instance,  # noqa: F401  (tests import it from here)
    make_user,
    token_client,
)
from tests.registry import handlers
from tests.registry.events import EVENTS_TYPE

REGISTRY_MODELS = [
    Instance,
    InstanceDomain,
    Namespace,
    Repository,
    Manifest,
    ManifestReference,
    Tag,
    TagHistory,
    RegistryEvent,
]


def db_snapshot() -> dict[str, list[dict[str, Any]]]:
    """Every registry row, every column: equal snapshots mean nothing changed."""
    snapshot = {}
    for model in REGISTRY_MODELS:
        rows = []
        for row in model._default_manager.order_by("pk").values():
            rows.append({k: bytes(v) if isinstance(v, memoryview) else v for k, v in row.items()})
        snapshot[model.__name__] = rows
    return snapshot


@pytest.fixture
def post_events(instance, webhook_token) -> Callable[..., Any]:
    """POST a body to the webhook through Django's test client (CSRF checks on)."""
    client = Client(enforce_csrf_checks=True)

    def post(
        body: Any,
        *,
        token: str | None = webhook_token,
        instance_name: str | None = None,
        content_type: str = EVENTS_TYPE,
        authorization: str | None = None,
    ):
        """``authorization``: the whole Authorization header, instead of ``token``'s."""
        import json

        data = body if isinstance(body, bytes | str) else json.dumps(body)
        if authorization is None and token is not None:
            authorization = f"Bearer {token}"
        headers = {} if authorization is None else {"Authorization": authorization}
        url = f"/api/v1/registry/instances/{instance_name or instance.name}/events/"
        return client.post(url, data=data, content_type=content_type, headers=headers)

    return post


@pytest.fixture
def recorded_calls():
    handlers.reset()
    yield handlers.CALLS
    handlers.reset()


@pytest.fixture
def client_with(db):
    """``client_with("registry.view_tag", ..., member_of=instance)``: a token client for a
    user with those perms (and an operator membership on ``member_of``)."""

    def build(*perms: str, member_of: Any = None, **fields: Any) -> APIClient:
        user = make_user(perms=list(perms), **fields)
        if member_of is not None:  # a sub-account sees only the instances granted to it
            grant(user, member_of)
        return token_client(user)

    return build
