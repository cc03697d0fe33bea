"""The KMS admin's confirmation pages (issue 12, point 4): disabling a key a signing policy
uses and revoking the registry-signing authorization first show what breaks (policies,
namespaces, images waiting) and act only once confirmed. The KMS learns about the
policies through ``kms.dependants``, filled in by ``SigningConfig.ready()``."""

from __future__ import annotations

import pytest
from django.urls import reverse

from kms import services as kms_services
from kms.models import KeyState, ServiceAuthorization
from signing.models import Signature, SignatureStatus
from tests.factories import make_key, make_user

pytestmark = pytest.mark.django_db

KEYS = reverse("admin:kms_key_changelist")
GRANTS = reverse("admin:kms_serviceauthorization_changelist")
CONFIRM_BUTTON = 'type="submit" value="Yes, I\'m sure"'


def run_action(client, url, action, *objects, **extra):
    data = {"action": action, "_selected_action": [str(o.pk) for o in objects], "index": 0}
    return client.post(url, {**data, **extra}, follow=True)


def confirm(client, url, action, *objects, **extra):
    """What the confirmation page posts back."""
    data = {"action": action, "_selected_action": [str(o.pk) for o in objects]}
    return client.post(url, {**data, "confirmed": "yes", **extra}, follow=True)


def state_of(key) -> str:
    key.refresh_from_db()
    return key.state


@pytest.fixture
def waiting(policy, push_image_event) -> Signature:
    """One image of the policy's namespace waiting to be signed (signing runs after commit,
    which a test transaction never reaches)."""
    push_image_event(tag="v1")
    return Signature.objects.get(status=SignatureStatus.PENDING)


def test_disabling_a_key_a_policy_uses_asks_first_naming_what_breaks(
    admin_client, key, policy, waiting
):
    page = run_action(admin_client, KEYS, "disable_keys", key)
    body = page.content.decode()

    assert page.status_code == 200
    assert state_of(key) == KeyState.ENABLED
    assert "team-policy" in body and "namespace team of instance signet" in body
    assert '<p id="pending-images">In all, <strong>1</strong> image waiting' in body
    assert CONFIRM_BUTTON in body

    done = confirm(admin_client, KEYS, "disable_keys", key)

    assert state_of(key) == KeyState.DISABLED
    assert [str(m) for m in done.context["messages"]] == ["image-signing: disabled."]


def test_a_key_no_policy_uses_is_disabled_at_once(admin_client, key, policy):
    spare = make_key("spare")

    response = run_action(admin_client, KEYS, "disable_keys", spare)

    assert state_of(spare) == KeyState.DISABLED
    assert [str(m) for m in response.context["messages"]] == ["spare: disabled."]


def test_the_disable_button_of_a_key_page_confirms_and_returns_to_the_key(
    admin_client, key, policy
):
    change = reverse("admin:kms_key_change", args=[key.pk])

    page = run_action(admin_client, KEYS, "disable_keys", key, _from_change_page="1")
    done = confirm(admin_client, KEYS, "disable_keys", key, _from_change_page="1")

    assert f'href="{change}" class="button cancel-link"' in page.content.decode()
    assert done.redirect_chain[-1][0] == change
    assert state_of(key) == KeyState.DISABLED


def test_revoking_the_authorization_asks_first_naming_every_policy(
    admin_client, authorized, policy, waiting
):
    page = run_action(admin_client, GRANTS, "revoke", authorized)
    body = page.content.decode()

    assert page.status_code == 200
    assert kms_services.is_service_authorized(authorized.service)
    assert "Signing policy" in body and "team-policy" in body
    assert "namespace team of instance signet" in body
    assert "<strong>1</strong> image waiting" in body
    assert CONFIRM_BUTTON in body

    confirm(admin_client, GRANTS, "revoke", authorized)

    assert not kms_services.is_service_authorized(authorized.service)
    assert ServiceAuthorization.objects.get().revoked_at is not None


def test_a_key_manager_is_told_of_policies_outside_their_namespaces_without_their_names(
    client, key, policy, waiting
):
    client.force_login(make_user(perms=["kms.view_key", "kms.manage_key_state"], is_staff=True))

    body = run_action(client, KEYS, "disable_keys", key).content.decode()

    assert "team-policy" not in body and "namespace team" not in body
    assert "and 1 more signing policy in namespaces you cannot see (1 image waiting)" in body
    assert state_of(key) == KeyState.ENABLED
