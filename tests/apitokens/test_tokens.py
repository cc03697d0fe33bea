"""API tokens: hashed at rest, expiring, revocable, audited, never cached."""

from __future__ import annotations

import hashlib
import io
import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from apitokens.models import ApiToken
from audit.models import AuditEvent
from tests.factories import make_token, make_user
from tests.support.settings_process import print_setting

pytestmark = pytest.mark.django_db

TOKEN_URL = "/api/v1/auth/token/"
KEYS = "/api/v1/kms/keys/"


def session_for(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def token_api(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def event_text(event: AuditEvent) -> str:
    return json.dumps(
        AuditEvent.objects.filter(pk=event.pk).values().get(), default=str, sort_keys=True
    )


# --- stored as a hash -----------------------------------------------------------------------


def test_a_created_token_is_stored_only_as_its_hash():
    user = make_user("hashed", perms=["kms.view_key"])

    response = session_for(user).post(TOKEN_URL)

    assert response.status_code == 201
    token = response.json()["token"]
    assert len(token) == 64
    row = ApiToken.objects.get(user=user)
    assert row.digest == hashlib.sha512(token.encode()).hexdigest()
    assert token not in json.dumps(list(ApiToken.objects.values()), default=str)
    assert token_api(token).get(KEYS).status_code == 200


def test_a_database_dump_holds_no_usable_token():
    user = make_user("dumped", perms=["kms.view_key"])
    token = session_for(user).post(TOKEN_URL).json()["token"]
    dump = io.StringIO()

    call_command("dumpdata", stdout=dump)

    assert token not in dump.getvalue()
    stored = ApiToken.objects.get(user=user)
    # What a dump does hold (digest, 15-character prefix) is refused as a token.
    assert stored.digest in dump.getvalue()
    assert token_api(stored.digest).get(KEYS).status_code == 401
    assert token_api(stored.token_key).get(KEYS).status_code == 401


# --- expiry ---------------------------------------------------------------------------------


def test_an_expired_token_answers_401_saying_it_expired():
    user = make_user("late", perms=["kms.view_key"])
    token = make_token(user, expiry=timedelta(seconds=-1))

    first = token_api(token).get(KEYS)
    again = token_api(token).get(KEYS)

    assert first.status_code == 401
    body = first.json()
    assert body["code"] == "AuthFailure.TokenExpired"
    assert body["message"].startswith("Token expired at ")
    assert "POST /api/v1/auth/token/" in body["message"]
    assert first["WWW-Authenticate"] == "Token"
    assert again.json()["code"] == "AuthFailure.TokenExpired"  # not deleted on sight
    assert ApiToken.objects.filter(user=user).count() == 1


@pytest.mark.parametrize("token", ["0" * 64, "abc\x00def", "t\u00f6ken", "x\x7f"])
def test_an_unknown_or_malformed_token_answers_401_invalid_token(token):
    response = token_api(token).get(KEYS)

    assert response.status_code == 401
    assert response.json() == {"code": "AuthFailure", "message": "Invalid token."}


def test_a_token_expires_after_API_TOKEN_TTL(settings):
    settings.API_TOKEN_TTL = timedelta(days=30)
    user = make_user("ttl")
    before = timezone.now()

    response = session_for(user).post(TOKEN_URL)

    row = ApiToken.objects.get(user=user)
    assert before + timedelta(days=30) <= row.expiry <= timezone.now() + timedelta(days=30)
    assert response.json()["expires"] == row.expiry.isoformat().replace("+00:00", "Z")
    assert response.json()["prefix"] == response.json()["token"][:8] == row.token_key[:8]


def test_API_TOKEN_TTL_never_makes_tokens_that_do_not_expire(settings):
    settings.API_TOKEN_TTL = None
    user = make_user("forever", perms=["kms.view_key"])

    response = session_for(user).post(TOKEN_URL)

    assert response.json()["expires"] is None
    assert ApiToken.objects.get(user=user).expiry is None
    assert token_api(response.json()["token"]).get(KEYS).status_code == 200


def _settings_in_subprocess(**env: str):
    return print_setting("repr(settings.API_TOKEN_TTL)", **env)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "datetime.timedelta(days=30)"),
        ("7", "datetime.timedelta(days=7)"),
        ("never", "None"),
        (" Never ", "None"),
    ],
)
def test_API_TOKEN_TTL_comes_from_the_environment(value, expected, monkeypatch):
    monkeypatch.delenv("API_TOKEN_TTL", raising=False)
    env = {} if value is None else {"API_TOKEN_TTL": value}

    result = _settings_in_subprocess(**env)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


@pytest.mark.parametrize("value", ["0", "-3", "30d", "", "forever", "36501"])
def test_a_malformed_API_TOKEN_TTL_stops_the_process_naming_the_variable(value):
    result = _settings_in_subprocess(API_TOKEN_TTL=value)

    assert result.returncode != 0
    assert "ImproperlyConfigured: API_TOKEN_TTL is malformed" in result.stderr
    assert "or 'never'" in result.stderr


# --- create, rotate, revoke, audit, caching -----------------------------------------------------


def test_creating_a_token_is_audited_without_the_token():
    user = make_user("audited")

    response = session_for(user).post(TOKEN_URL, REMOTE_ADDR="198.51.100.9")

    token = response.json()["token"]
    event = AuditEvent.objects.get(action="apitokens.token.created")
    assert (event.actor, event.object_type, event.object_id) == (
        user,
        "apitokens.apitoken",
        token[:8],
    )
    assert event.details["user"] == "audited"
    assert event.details["via"] == "api"
    assert event.details["expires"] == response.json()["expires"].replace("Z", "+00:00")
    assert event.source_ip == "198.51.100.9"
    assert token not in event_text(event)
    assert ApiToken.objects.get(user=user).digest not in event_text(event)


def test_rotating_revokes_the_previous_tokens_and_audits_each():
    user = make_user("rotor", perms=["kms.view_key"])
    old = [make_token(user), make_token(user, expiry=None)]

    response = token_api(old[0]).post(TOKEN_URL)

    new = response.json()["token"]
    assert response.status_code == 201
    assert [token_api(t).get(KEYS).status_code for t in old] == [401, 401]
    assert token_api(new).get(KEYS).status_code == 200
    assert list(ApiToken.objects.filter(user=user).values_list("token_key", flat=True)) == [
        new[:15]
    ]
    revoked = AuditEvent.objects.filter(action="apitokens.token.revoked").order_by("id")
    assert sorted(e.object_id for e in revoked) == sorted(t[:8] for t in old)
    assert {e.details["reason"] for e in revoked} == {"rotated"}
    assert all(t not in event_text(e) for e in revoked for t in [*old, new])


def test_revoking_stops_the_token_and_is_audited():
    user = make_user("quitter", perms=["kms.view_key"])
    token = make_token(user)
    api = token_api(token)

    revoked = api.delete(TOKEN_URL)
    after = api.get(KEYS)
    again = session_for(user).delete(TOKEN_URL)

    assert revoked.status_code == 204
    assert after.status_code == 401
    assert again.status_code == 404
    assert again.json()["message"] == "You have no API token."
    assert not ApiToken.objects.filter(user=user).exists()
    event = AuditEvent.objects.get(action="apitokens.token.revoked")
    assert (event.actor, event.object_id) == (user, token[:8])
    assert event.details == {
        "user": "quitter",
        "prefix": token[:8],
        "reason": "revoked by its user",
        "expired": False,
    }
    assert token not in event_text(event)


def test_an_answer_carrying_a_token_is_never_stored_by_a_cache():
    user = make_user("uncached")

    created = session_for(user).post(TOKEN_URL)
    rotated = token_api(created.json()["token"]).post(TOKEN_URL)

    for response in (created, rotated):
        assert response.status_code == 201
        directives = {d.strip() for d in response["Cache-Control"].split(",")}
        assert "no-store" in directives
    assert ApiToken.objects.filter(user=user).count() == 1


def test_create_api_token_issues_a_token_for_a_service_account(settings):
    settings.API_TOKEN_TTL = timedelta(days=30)
    user = make_user("kms-service", perms=["kms.view_key"])
    out, err = io.StringIO(), io.StringIO()

    call_command("create_api_token", "kms-service", "--ttl", "never", stdout=out, stderr=err)

    token = out.getvalue().strip()
    row = ApiToken.objects.get(user=user)
    assert row.expiry is None
    assert row.digest == hashlib.sha512(token.encode()).hexdigest()
    assert token not in err.getvalue() and "expires: never" in err.getvalue()
    assert token_api(token).get(KEYS).status_code == 200
    event = AuditEvent.objects.get(action="apitokens.token.created")
    assert (event.actor_type, event.actor_label) == ("command", "manage.py create_api_token")
    assert event.details["via"] == "command" and event.details["expires"] == "never"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nobody"], "No user named 'nobody'."),
        (["someone", "--ttl", "0"], "--ttl must be a number of days (1 to 36500) or 'never'"),
    ],
)
def test_create_api_token_refuses_bad_input(args, message):
    from django.core.management.base import CommandError

    make_user("someone")

    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call_command("create_api_token", *args, stdout=io.StringIO())

    assert not ApiToken.objects.exists()
    assert not AuditEvent.objects.exists()
