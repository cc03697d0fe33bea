"""The audit log in the admin: readable with the view permission, never writable."""

from __future__ import annotations

import pytest
from django.contrib.admin.sites import site
from django.test import RequestFactory
from django.urls import reverse

from accounts.models import Role
from audit import context
from audit import services as audit
from audit.models import AuditEvent
from tests.accounts.support import grant
from tests.factories import make_user
from tests.registry.conftest import make_instance

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("wired")]

CHANGELIST = reverse("admin:audit_auditevent_changelist")
ADD = reverse("admin:audit_auditevent_add")


def change_url(event: AuditEvent) -> str:
    return reverse("admin:audit_auditevent_change", args=[event.pk])


def delete_url(event: AuditEvent) -> str:
    return reverse("admin:audit_auditevent_delete", args=[event.pk])


@pytest.fixture
def recorded() -> list[AuditEvent]:
    with context.command_actor("manage.py purge_deleted_keys"):
        purged = audit.record("kms.key.purged", object_type="kms.key", object_id="k-purged",
                              object_repr="old-key (k-purged)", details={"alias": "old-key"})
    changed = audit.record(
        "kms.key.state_changed", object_type="kms.key", object_id="k-toggled",
        object_repr="toggled (k-toggled)", changes={"state": ["Enabled", "Disabled"]},
        actor=make_user("alice"),
    )
    return [purged, changed]


def _snapshot() -> list[dict]:
    return list(AuditEvent.objects.order_by("id").values())


def test_even_a_superuser_cannot_add_change_or_delete_events(admin_client, recorded):
    event = recorded[1]
    before = _snapshot()

    assert admin_client.get(ADD).status_code == 403
    assert admin_client.post(ADD, {"action": "kms.key.created", "actor_type": "user",
                                   "actor_label": "forged"}).status_code == 403
    assert admin_client.post(change_url(event), {"object_repr": "rewritten"}).status_code == 403
    assert admin_client.get(delete_url(event)).status_code == 403
    assert admin_client.post(delete_url(event), {"post": "yes"}).status_code == 403

    assert _snapshot() == before


def test_the_change_page_shows_the_event_read_only_with_pretty_json(admin_client, recorded):
    response = admin_client.get(change_url(recorded[1]))

    page = response.content.decode()
    assert response.status_code == 200
    assert 'name="_save"' not in page and 'name="_continue"' not in page
    assert '<pre class="audit-json">{\n  &quot;state&quot;: [\n    &quot;Enabled&quot;' in page
    assert "alice" in page and "kms.key.state_changed" in page


def test_the_changelist_offers_no_delete_action_and_ignores_a_forged_one(
    admin_client, admin_user, recorded
):
    response = admin_client.get(CHANGELIST)
    request = RequestFactory().get(CHANGELIST)
    request.user = admin_user

    assert response.status_code == 200
    assert "delete_selected" not in response.content.decode()
    assert "delete_selected" not in site._registry[AuditEvent].get_actions(request)

    admin_client.post(CHANGELIST, {"action": "delete_selected", "index": 0,
                                   "_selected_action": [str(e.pk) for e in recorded],
                                   "post": "yes"})
    assert AuditEvent.objects.filter(pk__in=[e.pk for e in recorded]).count() == 2


def test_the_changelist_filters_by_actor_type_action_object_and_time(admin_client, recorded):
    purged, changed = recorded

    def listed(params) -> list[int]:
        response = admin_client.get(CHANGELIST, params)
        assert response.status_code == 200
        return [event.pk for event in response.context["cl"].result_list]

    assert listed({"actor_type": "command"}) == [purged.pk]
    assert listed({"action": "kms.key.state_changed"}) == [changed.pk]
    assert listed({"object_type": "kms.key", "q": "k-purged"}) == [purged.pk]
    assert listed({"q": "alice"}) == [changed.pk]
    assert listed({"actor__id__exact": changed.actor_id}) == [changed.pk]
    year = changed.at.year
    assert set(listed({"at__year": year})) == {purged.pk, changed.pk}
    assert listed({"at__year": year - 1}) == []
    team = audit.record("signing.policy.created", object_type="signing.signingpolicy",
                        object_id="1", instance_name="prod", namespace_name="team")
    assert listed({"namespace_name": "team"}) == [team.pk]
    assert listed({"namespace_name": "nowhere"}) == []


def test_staff_need_the_view_permission_and_get_nothing_more(client, recorded):
    staff = make_user("staff", is_staff=True)
    client.force_login(staff)
    assert client.get(CHANGELIST).status_code == 403

    viewer = make_user("auditor", is_staff=True, perms=["audit.view_auditevent"])
    # A sub-account sees its instance's events; KMS events (no instance) are for admins.
    instance, _token = make_instance("prod")
    grant(viewer, instance, role=Role.READER)
    instance_event = audit.record("signing.sign.requested", object_type="signing.signingpolicy",
                                  object_id="3", instance_name="prod")
    client.force_login(viewer)
    before = _snapshot()
    listed = client.get(CHANGELIST)
    assert listed.status_code == 200
    shown = list(listed.context["cl"].result_list)
    assert instance_event in shown and not set(recorded) & set(shown)
    assert {event.instance_name for event in shown} == {"prod"}
    assert client.get(change_url(instance_event)).status_code == 200
    assert client.get(change_url(recorded[0])).status_code == 302  # "does not exist"
    assert client.get(ADD).status_code == 403
    assert client.post(delete_url(recorded[0]), {"post": "yes"}).status_code == 403
    assert _snapshot() == before


def test_only_the_view_permission_exists_for_audit_events():
    from django.contrib.auth.models import Permission

    codenames = set(
        Permission.objects.filter(content_type__app_label="audit").values_list(
            "codename", flat=True
        )
    )
    assert codenames == {"view_auditevent"}
