"""Factories for test data. Keys go through the real service, so material is sealed."""

from __future__ import annotations

import itertools
from typing import Any

from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from kms import services as kms_services
from kms.models import Key, KeyUsage
from registry import services as registry_services
from registry.models import Instance

_sequence = itertools.count(1)


def make_user(username: str | None = None, *, perms: list[str] | None = None, **fields):
    from django.contrib.auth.models import Permission

    user = get_user_model().objects.create_user(
        username=username or f"user{next(_sequence)}", password="pw-for-tests-only", **fields
    )
    for perm in perms or []:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user


def make_token(user, **fields) -> str:
    """A new API token of ``user`` (hashed in the database, expiring after API_TOKEN_TTL
    unless ``expiry=`` says otherwise); made directly, so no audit event."""
    from django.conf import settings

    from apitokens.models import ApiToken

    _row, token = ApiToken.objects.create(user=user, **{"expiry": settings.API_TOKEN_TTL, **fields})
    return token


def make_key(
    alias: str | None = None,
    *,
    key_usage: str = KeyUsage.RSA_2048,
    region: str | None = None,
    **kwargs,
) -> Key:
    return kms_services.create_key(
        alias=alias or f"key-{next(_sequence)}", key_usage=key_usage, region=region, **kwargs
    )


def instance_defaults(name: str = "prod", **fields: Any) -> dict[str, Any]:
    """``create_instance`` arguments: a backend nothing listens on, a unique default domain."""
    fields.setdefault("backend_url", "http://127.0.0.1:9")
    # Domain names are unique across instances: "prod" keeps the plain one.
    fields.setdefault(
        "default_domain", "registry.example.com" if name == "prod" else f"{name}.example.com"
    )
    return {"name": name, **fields}


def make_instance(name: str = "prod", **fields: Any) -> tuple[Instance, str]:
    """A registry instance and its webhook token (``instance_defaults`` fill the gaps)."""
    return registry_services.create_instance(**instance_defaults(name, **fields))


def token_client(user, **defaults: Any) -> APIClient:
    """A DRF client authenticating as ``user`` with a new API token (``defaults``: extra
    request variables for every request, as ``APIClient`` takes them)."""
    client = APIClient(**defaults)
    client.credentials(HTTP_AUTHORIZATION=f"Token {make_token(user)}")
    return client
