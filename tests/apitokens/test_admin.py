"""The API token admin shows no token, and deleting a row revokes the token (audited)."""

from __future__ import annotations

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse
from rest_framework.test import APIClient

from apitokens.models import ApiToken
from audit.models import AuditEvent
from tests.factories import make_token, make_user

pytestmark = pytest.mark.django_db


def test_the_admin_shows_prefix_user_created_and_expiry_but_no_token(admin_client):
    holder = make_user("holder")
    token = make_token(holder)
    forever = make_token(holder, expiry=None)
    row = ApiToken.objects.get(token_key=token[:15])

    listing = admin_client.get(reverse("admin:apitokens_apitoken_changelist"))
    page = admin_client.get(reverse("admin:apitokens_apitoken_change", args=[row.pk]))

    assert listing.status_code == page.status_code == 200
    for response in (listing, page):
        text = response.content.decode()
        assert token not in text and forever not in text
        assert token[:15] not in text  # not even knox's whole lookup prefix
        assert f"{token[:8]}…" in text and "holder" in text
    assert "never" in listing.content.decode()
    # The digest is the row's key, so it is in links; it is never displayed as a value.
    assert f">{row.digest}<" not in page.content.decode()


def test_nobody_creates_a_token_in_the_admin(admin_client):
    response = admin_client.get(reverse("admin:apitokens_apitoken_add"))

    assert response.status_code == 403
    assert not ApiToken.objects.exists()


def test_deleting_tokens_in_the_admin_revokes_them_and_is_audited(admin_client):
    holder = make_user("holder", perms=["kms.view_key"])
    first, second, kept = make_token(holder), make_token(holder), make_token(holder)
    rows = {t: ApiToken.objects.get(token_key=t[:15]) for t in (first, second, kept)}
    api = APIClient()

    deleted = admin_client.post(
        reverse("admin:apitokens_apitoken_delete", args=[rows[first].pk]), {"post": "yes"}
    )
    bulk = admin_client.post(
        reverse("admin:apitokens_apitoken_changelist"),
        {"action": "delete_selected", ACTION_CHECKBOX_NAME: [rows[second].pk], "post": "yes"},
    )

    assert deleted.status_code == bulk.status_code == 302
    assert list(ApiToken.objects.values_list("token_key", flat=True)) == [kept[:15]]
    for token, status in ((first, 401), (second, 401), (kept, 200)):
        api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        assert api.get("/api/v1/kms/keys/").status_code == status
    events = AuditEvent.objects.filter(action="apitokens.token.revoked").order_by("id")
    assert [(e.object_id, e.actor.username, e.details["reason"]) for e in events] == [
        (first[:8], "root", "revoked in the admin"),
        (second[:8], "root", "revoked in the admin"),
    ]
