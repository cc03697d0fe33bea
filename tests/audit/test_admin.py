"""The audit log in the admin: readable with the view permission, never writable; its
list filters never read the (unbounded) audit table for their choices."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from django.contrib.admin.sites import site
from django.db import connection
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.models import Role
from audit import context
from audit import services as audit
from audit.models import AuditEvent
from registry import services as registry_services
from tests.accounts.support import grant
from tests.factories import make_user
from tests.registry.conftest import make_instance

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:audit_auditevent_changelist")
ADD = reverse("admin:audit_auditevent_add")


def change_url(event: AuditEvent) -> str:
    return reverse("admin:audit_auditevent_change", args=[event.pk])


def delete_url(event: AuditEvent) -> str:
    return reverse("admin:audit_auditevent_delete", args=[event.pk])


@pytest.fixture
def recorded() -> list[AuditEvent]:
    with context.command_actor("manage.py purge_deleted_keys"):
        purged = audit.record(
            "kms.key.purged",
            object_type="kms.key",
            object_id="k-purged",
            object_repr="old-key (k-purged)",
            details={"alias": "old-key"},
        )
    changed = audit.record(
        "kms.key.state_changed",
        object_type="kms.key",
        object_id="k-toggled",
        object_repr="toggled (k-toggled)",
        changes={"state": ["Enabled", "Disabled"]},
        actor=make_user("alice"),
    )
    return [purged, changed]


def _snapshot() -> list[Mapping[str, object]]:
    return list(AuditEvent.objects.order_by("id").values())


def test_even_a_superuser_cannot_add_change_or_delete_events(admin_client, recorded):
    event = recorded[1]
    before = _snapshot()

    assert admin_client.get(ADD).status_code == 403
    assert (
        admin_client.post(
            ADD, {"action": "kms.key.created", "actor_type": "user", "actor_label": "forged"}
        ).status_code
        == 403
    )
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

    admin_client.post(
        CHANGELIST,
        {
            "action": "delete_selected",
            "index": 0,
            "_selected_action": [str(e.pk) for e in recorded],
            "post": "yes",
        },
    )
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
    assert listed({"actor": "alice"}) == [changed.pk]
    assert listed({"actor": "manage.py purge_deleted_keys"}) == [purged.pk]
    assert set(listed({"action": "kms.*"})) == {purged.pk, changed.pk}
    assert listed({"action": "kms.key.purged", "actor_type": "user"}) == []
    year = changed.at.year
    assert set(listed({"at__year": year})) == {purged.pk, changed.pk}
    assert listed({"at__year": year - 1}) == []
    team = audit.record(
        "signing.policy.created",
        object_type="signing.signingpolicy",
        object_id="1",
        instance_name="prod",
        namespace_name="team",
    )
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
    instance_event = audit.record(
        "signing.sign.requested",
        object_type="signing.signingpolicy",
        object_id="3",
        instance_name="prod",
    )
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


# --- list filters: bounded choices, scoped rows -----------------------------------------------


@pytest.fixture
def log(db) -> dict[str, Any]:
    """prod (namespaces team, other) and elsewhere (ext, and a team of its own); events
    of each, by alice, bob and the system; a reader of prod, one narrowed to prod/other
    and a superuser."""
    prod, _token = make_instance("prod")
    elsewhere, _token = make_instance("elsewhere")
    team = registry_services.create_namespace(instance=prod, name="team")
    other = registry_services.create_namespace(instance=prod, name="other")
    registry_services.create_namespace(instance=elsewhere, name="ext")
    registry_services.create_namespace(instance=elsewhere, name="team")
    alice, bob = make_user("alice"), make_user("bob")
    policy = "signing.signingpolicy"
    events = {
        "kms": audit.record("kms.key.created", object_type="kms.key", object_id="k-1", actor=alice),
        "team": audit.record(
            "signing.policy.created",
            object_id="1",
            instance_name="prod",
            namespace_name="team",
            actor=alice,
            object_type=policy,
        ),
        "other": audit.record(
            "signing.policy.changed",
            object_id="2",
            instance_name="prod",
            namespace_name="other",
            actor=bob,
            object_type=policy,
        ),
        "failed": audit.record(
            "signing.signature.failed",
            object_type="signing.signature",
            object_id="3",
            instance_name="prod",
            namespace_name="team",
        ),
        "ext": audit.record(
            "signing.policy.created",
            object_id="4",
            instance_name="elsewhere",
            namespace_name="ext",
            actor=bob,
            object_type=policy,
        ),
        "ext_team": audit.record(
            "signing.policy.created",
            object_id="5",
            instance_name="elsewhere",
            namespace_name="team",
            actor=alice,
            object_type=policy,
        ),
        "prod_created": AuditEvent.objects.get(
            action="registry.instance.created", instance_name="prod"
        ),
        "elsewhere_created": AuditEvent.objects.get(
            action="registry.instance.created", instance_name="elsewhere"
        ),
        # The namespaces' creation (by the system: no request here).
        **{
            name: AuditEvent.objects.get(
                action="registry.namespace.created",
                instance_name=instance,
                namespace_name=namespace,
            )
            for name, instance, namespace in (
                ("ns_team", "prod", "team"),
                ("ns_other", "prod", "other"),
                ("ns_ext", "elsewhere", "ext"),
                ("ns_ext_team", "elsewhere", "team"),
            )
        },
    }
    reader = make_user("reader", is_staff=True, perms=["audit.view_auditevent"])
    grant(reader, prod, role=Role.READER)
    narrowed = make_user("narrowed", is_staff=True, perms=["audit.view_auditevent"])
    grant(narrowed, prod, role=Role.READER, namespaces=[other])
    admin = make_user("root", is_staff=True, is_superuser=True)
    assert team.instance == prod
    return {"events": events, "reader": reader, "narrowed": narrowed, "admin": admin}


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _listed(client: Client, params: dict[str, str], log: dict[str, Any]) -> set[str]:
    """The names (keys of ``log["events"]``) of the events the changelist shows."""
    response = client.get(CHANGELIST, params)
    assert response.status_code == 200, params
    names = {event.pk: name for name, event in log["events"].items()}
    shown = [event.pk for event in response.context["cl"].result_list]
    assert set(shown) <= set(names), "an event the fixture did not make"
    return {names[pk] for pk in shown}


def _choices(response, parameter_name: str) -> list[tuple[str, str]]:
    spec = next(
        spec
        for spec in response.context["cl"].filter_specs
        if getattr(spec, "parameter_name", None) == parameter_name
    )
    return list(spec.lookup_choices)


def test_a_superuser_filters_the_whole_log_by_each_filter(log):
    client = _client(log["admin"])
    year = log["events"]["kms"].at.year

    def listed(**params: str) -> set[str]:
        return _listed(client, params, log)

    assert listed() == set(log["events"])
    assert listed(actor="alice") == {"kms", "team", "ext_team"}
    assert listed(actor="bob") == {"other", "ext"}
    namespaces = {"ns_team", "ns_other", "ns_ext", "ns_ext_team"}
    assert listed(actor_type="system") == {
        "failed",
        "prod_created",
        "elsewhere_created",
        *namespaces,
    }
    assert listed(action="signing.policy.created") == {"team", "ext", "ext_team"}
    assert listed(action="signing.*") == {"team", "other", "failed", "ext", "ext_team"}
    assert listed(action="kms.*") == {"kms"}
    assert listed(action="registry.*") == {"prod_created", "elsewhere_created", *namespaces}
    assert listed(object_type="signing.signature") == {"failed"}
    assert listed(object_type="registry.instance") == {"prod_created", "elsewhere_created"}
    # A name two instances share selects the events of both.
    assert listed(namespace_name="team") == {"team", "failed", "ext_team", "ns_team", "ns_ext_team"}
    assert listed(namespace_name="ext") == {"ext", "ns_ext"}
    assert listed(namespace_name="nowhere") == set()
    assert listed(at__year=str(year)) == set(log["events"])
    assert listed(at__year=str(year - 1)) == set()
    assert listed(actor="alice", namespace_name="team", action="signing.*") == {"team", "ext_team"}


def test_a_reader_filters_only_the_events_of_its_scope(log):
    client = _client(log["reader"])

    def listed(**params: str) -> set[str]:
        return _listed(client, params, log)

    prod = {"team", "other", "failed", "prod_created", "ns_team", "ns_other"}
    assert listed() == prod
    assert listed(actor="alice") == {"team"}  # not alice's KMS or elsewhere events
    assert listed(actor="bob") == {"other"}
    assert listed(actor_type="system") == {"failed", "prod_created", "ns_team", "ns_other"}
    assert listed(action="signing.policy.created") == {"team"}
    assert listed(action="signing.*") == {"team", "other", "failed"}
    assert listed(action="kms.*") == set()
    assert listed(object_type="signing.signature") == {"failed"}
    assert listed(namespace_name="team") == {"team", "failed", "ns_team"}  # prod's team only
    assert listed(namespace_name="ext") == set()
    assert listed(at__year=str(log["events"]["team"].at.year)) == prod

    narrowed = _client(log["narrowed"])
    assert _listed(narrowed, {}, log) == {"other", "ns_other"}
    assert _listed(narrowed, {"namespace_name": "team"}, log) == set()
    assert _listed(narrowed, {"actor": "bob"}, log) == {"other"}
    assert _listed(narrowed, {"action": "signing.*"}, log) == {"other"}


def test_the_filter_choices_come_from_fixed_lists_and_the_users_scope(log):
    admin_page = _client(log["admin"]).get(CHANGELIST)
    reader_page = _client(log["reader"]).get(CHANGELIST)
    narrowed_page = _client(log["narrowed"]).get(CHANGELIST)

    assert _choices(admin_page, "namespace_name") == [
        ("ext", "elsewhere / ext"),
        ("other", "prod / other"),
        ("team", "elsewhere, prod / team"),
    ]
    assert _choices(reader_page, "namespace_name") == [
        ("other", "prod / other"),
        ("team", "prod / team"),
    ]
    assert _choices(narrowed_page, "namespace_name") == [("other", "prod / other")]
    reader_html = reader_page.content.decode()
    assert "?namespace_name=other" in reader_html and "?namespace_name=ext" not in reader_html
    assert "elsewhere" not in reader_html

    actions = [code for code, _label in _choices(reader_page, "action")]
    assert actions == [
        "accounts.*",
        "kms.*",
        "registry.*",
        "signing.*",
        "apitokens.*",
        *audit.KNOWN_ACTIONS,
    ]
    assert _choices(reader_page, "object_type") == [(t, t) for t in audit.KNOWN_OBJECT_TYPES]

    assert _choices(admin_page, "actor") == [
        (name, name) for name in ("alice", "bob", "narrowed", "reader", "root")
    ]
    # A sub-account learns no other username from the filter.
    assert _choices(reader_page, "actor") == [("reader", "reader")]
    assert _choices(narrowed_page, "actor") == [("narrowed", "narrowed")]


def test_the_actor_choices_are_bounded_and_keep_the_applied_one(log, monkeypatch):
    monkeypatch.setattr("audit.admin.MAX_ACTOR_CHOICES", 2)
    client = _client(log["admin"])

    first_page = client.get(CHANGELIST)
    applied = client.get(CHANGELIST, {"actor": "reader"})

    assert _choices(first_page, "actor") == [("alice", "alice"), ("bob", "bob")]
    assert _choices(applied, "actor") == [("alice", "alice"), ("bob", "bob"), ("reader", "reader")]
    assert 'href="?actor=reader"' in applied.content.decode()


AUDIT_TABLE = AuditEvent._meta.db_table


@pytest.mark.parametrize("persona", ["admin", "reader"])
@pytest.mark.parametrize(
    "params",
    [
        {},
        {
            "actor": "alice",
            "action": "signing.*",
            "namespace_name": "team",
            "object_type": "signing.signingpolicy",
            "actor_type": "user",
        },
    ],
)
def test_the_changelist_never_scans_the_audit_table_for_filter_choices(log, persona, params):
    client = _client(log[persona])

    with CaptureQueriesContext(connection) as queries:
        response = client.get(CHANGELIST, params)

    assert response.status_code == 200
    on_audit = [query["sql"] for query in queries.captured_queries if AUDIT_TABLE in query["sql"]]
    assert on_audit, "the changelist reads its rows from the audit table"
    assert not [sql for sql in on_audit if "DISTINCT" in sql.upper()], on_audit
    # The rows and the paginator's count, nothing per filter.
    assert len(on_audit) <= 2, on_audit
