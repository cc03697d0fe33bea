"""A rotation never extends a token's life: a leaked token cannot renew itself forever.

Asked with a token, the new token expires no later than the calling one; asked from a
signed-in session (someone who knows the password), it gets the full API_TOKEN_TTL. A
token that never expires sets no limit of its own: its replacement gets what
API_TOKEN_TTL allows (an expiring token unless API_TOKEN_TTL is "never"), since a token
that never expires is an operator's decision (``manage.py create_api_token --ttl never``),
not something a token holder can hand itself.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apitokens.models import ApiToken
from audit.models import AuditEvent
from tests.factories import make_token, make_user

pytestmark = pytest.mark.django_db

TOKEN_URL = "/api/v1/auth/token/"
KEYS = "/api/v1/kms/keys/"


def token_api(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def rotate_with(token: str) -> tuple[str, ApiToken]:
    response = token_api(token).post(TOKEN_URL)
    assert response.status_code == 201, response.content
    new = response.json()["token"]
    row = ApiToken.objects.get(token_key=new[:15])
    expected = None if row.expiry is None else row.expiry.isoformat().replace("+00:00", "Z")
    assert response.json()["expires"] == expected
    return new, row


def about_now_plus(value, lifetime: timedelta, before) -> bool:
    return before + lifetime <= value <= timezone.now() + lifetime


@pytest.fixture
def ttl_30_days(settings):
    settings.API_TOKEN_TTL = timedelta(days=30)


def test_rotating_with_a_token_cannot_extend_its_expiry(ttl_30_days):
    user = make_user("leaked", perms=["kms.view_key"])
    token = make_token(user, expiry=timedelta(days=2))
    ends = ApiToken.objects.get(user=user).expiry

    new, row = rotate_with(token)
    newer, again = rotate_with(new)

    assert row.expiry == ends and again.expiry == ends
    assert list(ApiToken.objects.filter(user=user)) == [again]
    assert token_api(token).get(KEYS).status_code == 401
    assert token_api(newer).get(KEYS).status_code == 200
    created = AuditEvent.objects.filter(action="apitokens.token.created").order_by("id")
    assert [e.details["expires"] for e in created] == [ends.isoformat()] * 2


def test_rotating_with_a_token_that_outlives_API_TOKEN_TTL_gets_API_TOKEN_TTL(ttl_30_days):
    user = make_user("long-lived")
    token = make_token(user, expiry=timedelta(days=365))
    before = timezone.now()

    _new, row = rotate_with(token)

    assert about_now_plus(row.expiry, timedelta(days=30), before)


def test_rotating_from_a_signed_in_session_gets_the_full_API_TOKEN_TTL(ttl_30_days):
    user = make_user("signed-in", perms=["kms.view_key"])
    old = make_token(user, expiry=timedelta(days=2))
    session = APIClient()
    session.force_login(user)
    before = timezone.now()

    response = session.post(TOKEN_URL)

    assert response.status_code == 201
    row = ApiToken.objects.get(user=user)
    assert row.token_key == response.json()["token"][:15]
    assert about_now_plus(row.expiry, timedelta(days=30), before)
    assert token_api(old).get(KEYS).status_code == 401


def test_a_never_expiring_service_token_rotates_to_API_TOKEN_TTL_and_no_further(ttl_30_days):
    user = make_user("kms-service", perms=["kms.view_key"])
    token = make_token(user, expiry=None)
    before = timezone.now()

    new, row = rotate_with(token)
    _newer, again = rotate_with(new)

    assert about_now_plus(row.expiry, timedelta(days=30), before)
    assert again.expiry == row.expiry  # the 30-day token cannot renew itself either


def test_a_never_expiring_token_rotates_to_one_only_when_API_TOKEN_TTL_is_never(settings):
    settings.API_TOKEN_TTL = None
    user = make_user("forever", perms=["kms.view_key"])
    token = make_token(user, expiry=None)

    new, row = rotate_with(token)

    assert row.expiry is None
    assert token_api(new).get(KEYS).status_code == 200


def test_the_openapi_description_says_a_rotation_never_extends_a_token(ttl_30_days):
    user = make_user("reader")
    schema = (
        token_api(make_token(user))
        .get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
        .json()
    )

    description = " ".join(schema["paths"][TOKEN_URL]["post"]["description"].split())
    assert "never extends a token's life" in description
    assert "no later than the calling token" in description
