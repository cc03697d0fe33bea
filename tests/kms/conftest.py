from __future__ import annotations

from collections.abc import Mapping

import pytest
from rest_framework.test import APIClient

from kms.models import Key, ServiceAuthorization
from tests.factories import make_user, token_client

KMS_PERMISSIONS = [
    "kms.view_key",
    "kms.add_key",
    "kms.change_key",
    "kms.delete_key",
    "kms.use_key",
    "kms.manage_key_state",
    "kms.view_serviceauthorization",
    "kms.add_serviceauthorization",
    "kms.change_serviceauthorization",
    "kms.delete_serviceauthorization",
]


@pytest.fixture
def client_with():
    """``client_with("kms.use_key", ...)``: a token client for a user with exactly those perms."""

    def build(*perms: str, **fields) -> APIClient:
        return token_client(make_user(perms=list(perms), **fields))

    return build


def db_snapshot() -> tuple[list[Mapping[str, object]], list[Mapping[str, object]]]:
    """Every KMS row, every column: equal snapshots mean nothing changed."""
    keys: list[Mapping[str, object]] = [
        {**row, "sealed_private_key": bytes(row["sealed_private_key"])}
        for row in Key.objects.order_by("key_id").values()
    ]
    grants: list[Mapping[str, object]] = list(ServiceAuthorization.objects.order_by("id").values())
    return keys, grants
