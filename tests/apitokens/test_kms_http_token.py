"""KMS_HTTP_TOKEN (the KMS http backend's token) with hashed, expiring tokens."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import call_command

from kms.clients import HttpKmsClient, KmsAuthFailure, get_kms_client
from tests.factories import make_key, make_token, make_user


@pytest.fixture
def kms_user(transactional_db):
    return make_user("kms-service", perms=["kms.view_key", "kms.use_key"])


@pytest.fixture
def http_backend(settings, live_server):
    settings.KMS_BACKEND = "http"
    settings.KMS_HTTP_URL = live_server.url

    def use(token: str) -> HttpKmsClient:
        settings.KMS_HTTP_TOKEN = token
        client = get_kms_client()
        assert isinstance(client, HttpKmsClient)
        return client

    return use


def test_a_service_token_from_create_api_token_authenticates_the_kms_http_backend(
    kms_user, http_backend
):
    out = io.StringIO()
    call_command(
        "create_api_token", "kms-service", "--ttl", "never", stdout=out, stderr=io.StringIO()
    )
    key = make_key("signing-key")

    client = http_backend(out.getvalue().strip())

    assert client.describe_key(str(key.key_id)).alias == "signing-key"


def test_an_expired_KMS_HTTP_TOKEN_fails_saying_so(kms_user, http_backend):
    key = make_key("signing-key")
    client = http_backend(make_token(kms_user, expiry=timedelta(seconds=-1)))

    with pytest.raises(KmsAuthFailure) as failure:
        client.describe_key(str(key.key_id))

    message = str(failure.value)
    assert "HTTP 401 (AuthFailure.TokenExpired: Token expired at " in message
    assert "check the token (KMS_HTTP_TOKEN)" in message
