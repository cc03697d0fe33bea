"""A changed password revokes the user's API tokens, whichever way it was changed."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.management import call_command
from django.test import Client, RequestFactory
from django.urls import reverse
from rest_framework.test import APIClient

from apitokens.models import ApiToken
from audit.models import AuditEvent
from tests.factories import make_token, make_user

pytestmark = pytest.mark.django_db

KEYS = "/api/v1/kms/keys/"
NEW_PASSWORD = "a-brand-new-Passphrase-91"


def sign_in_request():
    """What a sign-in carries: the admin-login limits (django-axes) count by its address."""
    return RequestFactory().post("/admin/login/")


def works(token: str) -> bool:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client.get(KEYS).status_code == 200


def revocations(user) -> list[tuple[str, str]]:
    return [
        (event.object_id, event.details["reason"])
        for event in AuditEvent.objects.filter(
            action="apitokens.token.revoked", details__user=user.username
        ).order_by("id")
    ]


@pytest.fixture
def holder():
    user = make_user("holder", perms=["kms.view_key"], is_staff=True)
    tokens = [make_token(user), make_token(user, expiry=None)]
    assert all(works(token) for token in tokens)
    return user, tokens


def assert_revoked(user, tokens) -> None:
    assert not any(works(token) for token in tokens)
    assert not ApiToken.objects.filter(user=user).exists()
    assert sorted(revocations(user)) == sorted((t[:8], "password changed") for t in tokens)


def test_the_admins_password_form_revokes_the_users_tokens(holder):
    user, tokens = holder
    admin = Client()
    admin.force_login(make_user("root", is_staff=True, is_superuser=True))

    response = admin.post(
        reverse("admin:auth_user_password_change", args=[user.pk]),
        {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "usable_password": "true"},
    )

    assert response.status_code == 302
    assert_revoked(user, tokens)
    assert (
        AuditEvent.objects.filter(action="apitokens.token.revoked").first().actor.username == "root"
    )


def test_changing_ones_own_password_in_the_admin_revokes_ones_tokens(holder):
    user, tokens = holder
    own = Client()
    own.force_login(user)

    response = own.post(
        reverse("admin:password_change"),
        {
            "old_password": "pw-for-tests-only",
            "new_password1": NEW_PASSWORD,
            "new_password2": NEW_PASSWORD,
        },
    )

    assert response.status_code == 302
    assert_revoked(user, tokens)


def test_the_changepassword_command_revokes_the_users_tokens(holder, monkeypatch):
    from django.contrib.auth.management.commands import changepassword

    user, tokens = holder
    # The command reads the password twice from the terminal (getpass).
    monkeypatch.setattr(changepassword.Command, "_get_pass", lambda self, prompt="": NEW_PASSWORD)

    call_command("changepassword", "holder", stdout=io.StringIO())

    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    assert_revoked(user, tokens)


def test_set_password_and_save_revokes_the_users_tokens(holder):
    user, tokens = holder
    fresh = get_user_model().objects.get(pk=user.pk)

    fresh.set_password(NEW_PASSWORD)
    fresh.save()

    assert_revoked(user, tokens)


def test_an_unusable_password_revokes_the_users_tokens(holder):
    user, tokens = holder

    user.set_unusable_password()
    user.save(update_fields=["password"])

    assert_revoked(user, tokens)


def test_saving_a_user_without_a_new_password_keeps_its_tokens(holder):
    user, tokens = holder
    signed_in = Client()

    user.first_name = "Renamed"
    user.save()
    assert signed_in.login(
        request=sign_in_request(), username="holder", password="pw-for-tests-only"
    )  # last_login

    assert all(works(token) for token in tokens)
    assert ApiToken.objects.filter(user=user).count() == 2
    assert revocations(user) == []


def test_djangos_hasher_upgrade_at_sign_in_keeps_the_users_tokens(settings):
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
        "django.contrib.auth.hashers.MD5PasswordHasher",
    ]
    user = make_user("upgraded", perms=["kms.view_key"])
    get_user_model().objects.filter(pk=user.pk).update(
        password=make_password("old-hasher-pw", hasher="md5")
    )
    token = make_token(user)

    assert Client().login(request=sign_in_request(), username="upgraded", password="old-hasher-pw")

    user.refresh_from_db()
    assert user.password.startswith("pbkdf2_sha256$")  # rehashed on sign-in
    assert works(token)
    assert revocations(user) == []


def test_other_users_keep_their_tokens(holder):
    user, _tokens = holder
    bystander = make_user("bystander", perms=["kms.view_key"])
    theirs = make_token(bystander)

    user.set_password(NEW_PASSWORD)
    user.save()

    assert works(theirs)
    assert ApiToken.objects.filter(user=bystander).count() == 1
