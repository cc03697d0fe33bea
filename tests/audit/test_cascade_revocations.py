"""Access that ends because something else was deleted is audited like access revoked by
hand: deleting an instance ends its memberships, deleting a user ends its memberships
and API tokens; the cascade alone would remove them without an event."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.models import InstanceMembership
from apitokens.models import ApiToken
from audit.models import AuditEvent
from registry import services as registry_services
from tests.accounts.support import grant
from tests.factories import make_token, make_user
from tests.support.registry_server import free_port

pytestmark = pytest.mark.django_db


def make_instance(name: str):
    instance, _token = registry_services.create_instance(
        name=name,
        backend_url=f"http://127.0.0.1:{free_port()}",
        default_domain=f"{name}.example.test",
    )
    return instance


def test_deleting_an_instance_revokes_its_memberships_with_an_event_each():
    prod = make_instance("prod")
    alice, bob = make_user("alice"), make_user("bob")
    grant(alice, prod)
    grant(bob, prod)
    prod_id = prod.pk

    registry_services.delete_instance(instance=prod)

    assert not InstanceMembership.objects.exists()
    revoked = AuditEvent.objects.filter(action="accounts.membership.revoked").order_by("id")
    assert [event.details["user"] for event in revoked] == ["alice", "bob"]
    assert {event.instance_id for event in revoked} == {prod_id}
    # The instance's own deletion comes first, then what it took with it.
    deleted = AuditEvent.objects.get(action="registry.instance.deleted")
    assert all(deleted.pk < event.pk for event in revoked)


def test_deleting_a_user_in_the_admin_revokes_its_memberships_and_tokens(client):
    prod = make_instance("prod")
    leaver = make_user("leaver", is_staff=True)
    grant(leaver, prod)
    token = make_token(leaver)
    client.force_login(make_user("root", is_staff=True, is_superuser=True))

    response = client.post(reverse("admin:auth_user_delete", args=[leaver.pk]), {"post": "yes"})

    assert response.status_code == 302, response.content
    assert not ApiToken.objects.exists()
    assert not InstanceMembership.objects.exists()
    [membership] = AuditEvent.objects.filter(action="accounts.membership.revoked")
    assert membership.details["user"] == "leaver"
    [revoked] = AuditEvent.objects.filter(action="apitokens.token.revoked")
    assert revoked.details["reason"] == "user deleted"
    assert token not in str(revoked.details)
