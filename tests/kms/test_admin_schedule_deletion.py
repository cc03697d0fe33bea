"""The schedule-deletion page (issue 12, point 10): only Disabled keys can be scheduled
(``kms.services.states``), so the page's button is off when no selected key is Disabled,
says why, and names the keys the deletion skips."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from kms import services
from kms.models import KeyUsage
from tests.factories import make_key

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:kms_key_changelist")


def schedule_page(client, *keys) -> str:
    data = {"action": "schedule_deletion", "_selected_action": [str(k.pk) for k in keys]}
    response = client.post(CHANGELIST, {**data, "index": 0})
    assert response.status_code == 200
    return response.content.decode()


def submit_button(body: str) -> str:
    found = re.search(r'<input type="submit" name="apply"[^>]*>', body)
    assert found, "no submit button"
    return found.group(0)


def test_the_button_is_off_for_an_enabled_key_and_the_page_says_to_disable_it(admin_client):
    live = make_key("live", key_usage=KeyUsage.ECC)

    body = schedule_page(admin_client, live)

    assert " disabled" in submit_button(body)
    assert "disable a key before scheduling its deletion" in submit_button(body)
    assert "Disable them first" in body


def test_the_button_is_off_for_a_key_already_pending_deletion(admin_client):
    pending = make_key("going", key_usage=KeyUsage.ECC)
    services.disable_key(key_id=str(pending.key_id))
    services.schedule_key_deletion(key_id=str(pending.key_id), pending_window_in_days=7)

    body = schedule_page(admin_client, pending)

    assert " disabled" in submit_button(body)
    assert 'id="pending-keys"' in body


def test_with_a_disabled_key_among_them_the_button_counts_what_it_schedules(admin_client):
    live = make_key("live", key_usage=KeyUsage.ECC)
    idle = make_key("idle", key_usage=KeyUsage.ECC)
    services.disable_key(key_id=str(idle.key_id))

    button = submit_button(schedule_page(admin_client, live, idle))

    assert " disabled" not in button
    assert 'value="Schedule deletion of 1 key"' in button


def test_for_disabled_keys_only_the_button_is_the_plain_one(admin_client):
    idle = make_key("idle", key_usage=KeyUsage.ECC)
    services.disable_key(key_id=str(idle.key_id))

    button = submit_button(schedule_page(admin_client, idle))

    assert " disabled" not in button and 'value="Schedule deletion"' in button
