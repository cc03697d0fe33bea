"""Memberships: narrowing to namespaces is explicit, and the admin form checks it."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import pytest
from django.apps import apps
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from accounts.backends import forget_grants
from accounts.models import InstanceMembership, Role
from accounts.scoping import visible_namespaces
from tests.accounts.conftest import Scene, client_for
from tests.accounts.support import grant
from tests.factories import make_token, make_user

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse

pytestmark = [pytest.mark.django_db, pytest.mark.registry_server]

REG = "/api/v1/registry"


def test_a_narrowed_membership_whose_namespaces_are_deleted_grants_no_namespace(scene: Scene):
    user = make_user("narrow", is_staff=True)
    grant(user, scene.prod, role=Role.OPERATOR, namespaces=[scene.other_ns])
    assert list(visible_namespaces(user)) == [scene.other_ns]

    scene.other_ns.delete()
    forget_grants(user)

    assert list(visible_namespaces(user)) == []
    membership = InstanceMembership.objects.get(user=user)
    assert membership.all_namespaces is False and not membership.namespaces.exists()
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {make_token(user)}")
    assert api.get(f"{REG}/namespaces/").json()["count"] == 0
    assert api.get(f"{REG}/tags/").json()["count"] == 0
    assert api.get(f"{REG}/namespaces/{scene.team.pk}/").status_code == 404
    # A whole-instance reader still sees team.
    assert client_for(scene, "reader").get(f"{REG}/namespaces/{scene.team.pk}/").status_code == 200


def _add(scene: Scene, **fields: Any) -> _MonkeyPatchedWSGIResponse:
    client = Client()
    client.force_login(scene.users["admin"])
    data = {
        "user": scene.users["nogrant"].pk,
        "instance": scene.prod.pk,
        "role": "reader",
        **fields,
    }
    return client.post(reverse("admin:accounts_instancemembership_add"), data)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"all_namespaces": "on", "namespaces": ["team"]}, "Untick 'all namespaces'"),
        ({}, "Choose the namespaces of a narrowed membership"),
        ({"namespaces": ["ext"]}, "Not namespaces of instance prod: ext."),
    ],
    ids=["all-and-some", "narrowed-to-nothing", "another-instances-namespace"],
)
def test_the_membership_form_refuses_an_ambiguous_namespace_choice(scene: Scene, fields, message):
    by_name = {"team": scene.team.pk, "ext": scene.elsewhere.namespaces.get(name="ext").pk}
    if "namespaces" in fields:
        fields = {**fields, "namespaces": [by_name[name] for name in fields["namespaces"]]}

    response = _add(scene, **fields)

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["namespaces"]
    assert any(message in error for error in errors), errors
    assert not InstanceMembership.objects.filter(user=scene.users["nogrant"]).exists()


def test_the_admin_grants_a_narrowed_membership(scene: Scene):
    response = _add(scene, namespaces=[scene.other_ns.pk])

    assert response.status_code == 302
    membership = InstanceMembership.objects.get(user=scene.users["nogrant"])
    assert membership.all_namespaces is False
    assert list(membership.namespaces.all()) == [scene.other_ns]
    assert membership.granted_by == scene.users["admin"]
    assert list(visible_namespaces(scene.users["nogrant"])) == [scene.other_ns]


def test_the_migration_narrows_memberships_that_had_namespaces(scene: Scene):
    migration = importlib.import_module("accounts.migrations.0002_membership_all_namespaces")
    user = make_user("old-style")
    narrowed = InstanceMembership.objects.create(user=user, instance=scene.prod)
    narrowed.namespaces.set([scene.other_ns])  # the old meaning: only "other"

    migration.narrowed_where_namespaces_were_chosen(apps, None)

    narrowed.refresh_from_db()
    assert narrowed.all_namespaces is False
    reader = InstanceMembership.objects.get(user=scene.users["reader"])
    assert reader.all_namespaces is True  # no namespaces: the whole instance, as before


def test_memberships_made_in_code_fail_closed(scene: Scene):
    from audit import services as audit
    from audit.scoping import visible_events

    ext = scene.elsewhere.namespaces.get(name="ext")
    foreign = make_user("foreign")
    membership = InstanceMembership.objects.create(
        user=foreign, instance=scene.prod, all_namespaces=False
    )
    membership.namespaces.set([ext])  # a namespace of another instance: grants nothing
    both = make_user("both")
    ambiguous = InstanceMembership.objects.create(user=both, instance=scene.prod)
    ambiguous.namespaces.set([scene.other_ns])  # all_namespaces left True: still narrowed
    # An event about a namespace of prod that happens to be called like elsewhere's.
    same_name = audit.record(
        "signing.policy.created",
        object_type="signing.signingpolicy",
        object_id="x",
        instance_name="prod",
        namespace_name="ext",
    )

    assert list(visible_namespaces(foreign)) == []
    assert same_name not in visible_events(foreign)
    assert not visible_events(foreign).exists()
    assert list(visible_namespaces(both)) == [scene.other_ns]
    assert not visible_events(both).filter(namespace_name="team").exists()
