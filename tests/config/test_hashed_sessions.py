"""Sessions are kept in the database as a hash of their key: a dump of the sessions table
lets nobody sign in, while the real cookie works as before (admin and API)."""

from __future__ import annotations

import importlib
import io
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.apps import apps
from django.conf import settings
from django.contrib.sessions.backends import db as stock_db
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from config.sessions import SessionStore, stored_key
from tests.config.support import load_settings, minimal_production_env, settings_error
from tests.factories import make_user

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/?next=/admin/"
PASSWORD = "pw-for-tests-only"  # what tests.factories.make_user sets
KEYS = "/api/v1/kms/keys/"


@pytest.fixture
def staff(db):
    return make_user("staffer", is_staff=True, perms=["kms.view_key"])


def sign_in(client: Client, username: str = "staffer") -> str:
    """Sign in through the real admin login view; the session cookie's value."""
    response = client.post(LOGIN, {"username": username, "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/admin/"
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def with_cookie(value: str) -> Client:
    client = Client()
    client.cookies[settings.SESSION_COOKIE_NAME] = value
    return client


def signed_in_as(client: Client) -> str | None:
    """Who the admin index and the API take this client for (they must agree)."""
    admin = client.get("/admin/")
    api = client.get(KEYS)
    if admin.status_code == 200:
        assert api.status_code == 200
        return admin.wsgi_request.user.get_username()
    assert admin.status_code == 302 and admin["Location"].startswith("/admin/login/")
    assert api.status_code in (401, 403)
    return None


def stored_keys() -> list[str]:
    return list(Session.objects.values_list("session_key", flat=True))


def test_the_sessions_table_holds_only_a_hash_of_the_cookie(staff):
    client = Client()

    cookie = sign_in(client)

    assert stored_keys() == [stored_key(cookie)]
    assert len(stored_key(cookie)) == 40 and stored_key(cookie) != cookie
    assert signed_in_as(client) == "staffer"


def test_a_database_dump_does_not_contain_the_session_cookie(staff):
    cookie = sign_in(Client())
    dump = io.StringIO()

    call_command("dumpdata", stdout=dump)

    assert cookie not in dump.getvalue()
    assert stored_key(cookie) in dump.getvalue()  # the table was dumped: it holds the hash


def test_the_stored_value_sent_as_a_cookie_signs_nobody_in(staff):
    client = Client()
    cookie = sign_in(client)
    (stolen,) = stored_keys()

    assert signed_in_as(with_cookie(stolen)) is None
    assert signed_in_as(with_cookie(cookie)) == "staffer"
    assert stored_keys() == [stolen]  # the failed attempt created or changed nothing


def test_signing_out_deletes_the_session_row(staff):
    client = Client()
    cookie = sign_in(client)

    response = client.post("/admin/logout/")

    assert response.status_code == 200
    assert not Session.objects.filter(session_key=stored_key(cookie)).exists()
    assert signed_in_as(with_cookie(cookie)) is None


def test_signing_in_replaces_the_session_key_and_keeps_its_data(staff):
    client = Client()
    before = client.session  # a session started before signing in, with something in it
    before["marker"] = "kept"
    before.save()
    old = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert stored_keys() == [stored_key(old)]

    new = sign_in(client)

    assert new != old
    assert stored_keys() == [stored_key(new)]  # the old row is gone
    assert client.session["marker"] == "kept"
    assert signed_in_as(with_cookie(old)) is None
    assert signed_in_as(client) == "staffer"


def test_the_test_clients_force_login_uses_hashed_sessions(staff):
    clients = [Client(), Client()]

    for client in clients:
        client.force_login(staff)

    cookies = [c.cookies[settings.SESSION_COOKIE_NAME].value for c in clients]
    assert sorted(stored_keys()) == sorted(stored_key(c) for c in cookies)
    assert [signed_in_as(c) for c in clients] == ["staffer", "staffer"]


def test_a_session_lasts_SESSION_COOKIE_AGE_twelve_hours_by_default(staff):
    client = Client()
    before = timezone.now()

    cookie = sign_in(client)

    assert settings.SESSION_COOKIE_AGE == 12 * 60 * 60
    expires = Session.objects.get(session_key=stored_key(cookie)).expire_date
    assert before + timedelta(hours=12) <= expires <= timezone.now() + timedelta(hours=12)


def test_the_async_session_api_hashes_keys_too():
    store = SessionStore()

    @async_to_sync
    async def write_and_read() -> tuple[str, dict, bool, bool, bool]:
        await store.aset("greeting", "hello")
        await store.asave()
        key = store.session_key
        loaded = await SessionStore(key).aload()
        exists, hash_exists = await store.aexists(key), await store.aexists(stored_key(key))
        await SessionStore(key).adelete()
        return key, loaded, exists, hash_exists, await store.aexists(key)

    key, loaded, exists, hash_exists, after_delete = write_and_read()

    assert loaded == {"greeting": "hello"}
    assert (exists, hash_exists, after_delete) == (True, False, False)
    assert not Session.objects.exists()
    assert async_to_sync(SessionStore(stored_key(key)).aload)() == {}


def test_sessions_written_before_the_upgrade_no_longer_sign_in_and_are_removed(staff):
    old = stock_db.SessionStore()  # Django's own backend, as before the upgrade
    old.update(
        {
            "_auth_user_id": str(staff.pk),
            "_auth_user_backend": "django.contrib.auth.backends.ModelBackend",
            "_auth_user_hash": staff.get_session_auth_hash(),
        }
    )
    old.create()
    old.save()
    assert signed_in_as(with_cookie(old.session_key)) is None
    current = sign_in(Client())

    migration = importlib.import_module("accounts.migrations.0003_drop_cleartext_sessions")
    migration.drop_cleartext_sessions(apps, None)

    assert stored_keys() == [stored_key(current)]


def test_SESSION_COOKIE_AGE_comes_from_the_environment():
    env = minimal_production_env(SESSION_COOKIE_AGE="3600")
    assert load_settings(env, "SESSION_COOKIE_AGE", "SESSION_ENGINE") == {
        "SESSION_COOKIE_AGE": 3600,
        "SESSION_ENGINE": "config.sessions",
    }


@pytest.mark.parametrize("value", ["0", "59", "-1", "12h"])
def test_a_malformed_SESSION_COOKIE_AGE_stops_the_process_naming_it(value):
    assert "SESSION_COOKIE_AGE" in settings_error(minimal_production_env(SESSION_COOKIE_AGE=value))
