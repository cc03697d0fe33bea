"""Admin sign-in limits: failures are counted per user name and per address, through the
real admin login view; a locked-out sign-in answers 429 with a clear page, even with the
right password."""

from __future__ import annotations

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.test import Client

from tests.config.support import load_settings, minimal_production_env, settings_error
from tests.factories import make_user

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/?next=/admin/"
PASSWORD = "pw-for-tests-only"  # what tests.factories.make_user sets


@pytest.fixture
def staff(db):
    return {name: make_user(name, is_staff=True) for name in ("alice", "bob")}


def _sign_in(username: str, password: str, address: str):
    client = Client()
    response = client.post(LOGIN, {"username": username, "password": password}, REMOTE_ADDR=address)
    return response, client


def _signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def _assert_locked_out(response, client: Client) -> None:
    assert response.status_code == 429
    page = response.content.decode()
    assert "Sign-in locked: too many failed sign-in attempts" in page
    minutes = settings.SIGNET_LOGIN_LOCKOUT_MINUTES
    assert f"Try again in {minutes} minutes" in page
    assert response["Retry-After"] == str(minutes * 60)
    assert not _signed_in(client)


def test_the_limit_is_five_failures_in_fifteen_minutes_by_default():
    assert settings.AXES_ENABLED
    assert settings.AXES_FAILURE_LIMIT == settings.SIGNET_LOGIN_FAILURE_LIMIT == 5
    assert settings.AXES_COOLOFF_TIME.total_seconds() == 15 * 60


def test_a_user_name_is_locked_out_after_too_many_failures_from_any_addresses(staff):
    for attempt in range(settings.AXES_FAILURE_LIMIT - 1):
        response, _ = _sign_in("alice", "wrong", f"198.51.100.{attempt + 1}")
        assert response.status_code == 200  # the form again, with its usual error
        assert "Please enter the correct username and password" in response.content.decode()
    response, client = _sign_in("alice", "wrong", "198.51.100.50")
    _assert_locked_out(response, client)

    # Even the right password, from an address never seen before, is refused.
    response, client = _sign_in("alice", PASSWORD, "192.0.2.200")
    _assert_locked_out(response, client)
    assert AccessAttempt.objects.filter(username="alice").count() >= 5
    # Other accounts are unaffected.
    response, client = _sign_in("bob", PASSWORD, "192.0.2.201")
    assert response.status_code == 302
    assert _signed_in(client)


def test_an_address_is_locked_out_after_too_many_failures_for_any_user_names(staff):
    address = "203.0.113.7"
    for attempt in range(settings.AXES_FAILURE_LIMIT):
        response, client = _sign_in(f"guess{attempt}", "wrong", address)
    _assert_locked_out(response, client)

    # A real account with its right password, from that address: refused.
    response, client = _sign_in("bob", PASSWORD, address)
    _assert_locked_out(response, client)
    # The same account from elsewhere signs in.
    response, client = _sign_in("bob", PASSWORD, "203.0.113.8")
    assert response.status_code == 302
    assert _signed_in(client)


def test_fewer_failures_than_the_limit_do_not_lock_anyone_out(staff):
    for _attempt in range(settings.AXES_FAILURE_LIMIT - 1):
        _sign_in("alice", "wrong", "198.51.100.9")
    response, client = _sign_in("alice", PASSWORD, "198.51.100.9")
    assert response.status_code == 302
    assert _signed_in(client)


def test_a_lock_out_ends_after_the_lockout_time(staff):
    for attempt in range(settings.AXES_FAILURE_LIMIT):
        _sign_in("alice", "wrong", f"198.51.100.{attempt + 20}")
    response, client = _sign_in("alice", PASSWORD, "198.51.100.40")
    _assert_locked_out(response, client)

    AccessAttempt.objects.update(
        attempt_time=AccessAttempt.objects.values_list("attempt_time", flat=True).first()
        - settings.AXES_COOLOFF_TIME
        - timedelta(seconds=1)
    )
    response, client = _sign_in("alice", PASSWORD, "198.51.100.40")
    assert response.status_code == 302
    assert _signed_in(client)


def test_the_limits_come_from_the_environment():
    names = ("AXES_ENABLED", "AXES_FAILURE_LIMIT", "AXES_COOLOFF_TIME")
    env = minimal_production_env(SIGNET_LOGIN_FAILURE_LIMIT="3", SIGNET_LOGIN_LOCKOUT_MINUTES="60")
    assert load_settings(env, *names) == {
        "AXES_ENABLED": True,
        "AXES_FAILURE_LIMIT": 3,
        "AXES_COOLOFF_TIME": "1:00:00",
    }
    env = minimal_production_env(SIGNET_LOGIN_FAILURE_LIMIT="0")
    assert load_settings(env, "AXES_ENABLED") == {"AXES_ENABLED": False}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SIGNET_LOGIN_FAILURE_LIMIT", "-1"),
        ("SIGNET_LOGIN_FAILURE_LIMIT", "five"),
        ("SIGNET_LOGIN_LOCKOUT_MINUTES", "0"),
    ],
)
def test_a_malformed_limit_stops_the_process_naming_it(name, value):
    assert name in settings_error(minimal_production_env(**{name: value}))
