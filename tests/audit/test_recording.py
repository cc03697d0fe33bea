"""``audit.services.record`` and ``audit.context``: actor, object, source IP, secrets,
transactions."""

from __future__ import annotations

import datetime
import json
import uuid

import pytest
from django.db import transaction
from django.test import RequestFactory
from django.urls import reverse

from audit import context
from audit import services as audit
from audit.models import AuditEvent
from kms import services as kms_services
from kms.models import KeyState
from tests.audit.support import actions, events
from tests.factories import make_key, make_user

pytestmark = pytest.mark.django_db


def _request(user=None, **meta):
    request = RequestFactory().get("/", **meta)
    if user is not None:
        request.user = user
    return request


# --- object and actor ---------------------------------------------------------------------


def test_record_takes_the_object_type_id_and_repr_from_the_object():
    key = make_key("described")
    before = AuditEvent.objects.count()

    event = audit.record("kms.key.state_changed", obj=key, instance_name="inst")

    stored = AuditEvent.objects.get(pk=event.pk)
    assert AuditEvent.objects.count() == before + 1
    assert (stored.object_type, stored.object_id) == ("kms.key", str(key.key_id))
    assert stored.object_repr == f"described ({key.key_id})"
    assert stored.instance_name == "inst"
    assert stored.at is not None


def test_the_instance_and_namespace_names_are_stored_and_cut_to_their_columns():
    event = audit.record(
        "signing.policy.created",
        object_type="signing.signingpolicy",
        object_id="1",
        instance_name="i" * 60,
        namespace_name="n" * 300,
    )
    plain = audit.record(
        "signing.policy.created",
        object_type="signing.signingpolicy",
        object_id="2",
        instance_name="prod",
    )

    stored = AuditEvent.objects.get(pk=event.pk)
    assert (stored.instance_name, stored.namespace_name) == ("i" * 50, "n" * 255)
    assert AuditEvent.objects.get(pk=plain.pk).namespace_name == ""


def test_without_a_request_or_a_context_the_actor_is_the_system():
    event = audit.record("kms.master_key.rotated", object_type="kms.master_key", object_id=2)

    assert (event.actor_type, event.actor_label, event.actor_id) == ("system", "system", None)
    assert event.source_ip is None
    assert AuditEvent.objects.get(pk=event.pk).object_id == "2"


def test_the_request_user_is_read_when_the_event_is_recorded():
    alice = make_user("alice")
    request = _request(REMOTE_ADDR="192.0.2.10")
    with context.bound_request(request):
        request.user = alice  # as DRF does after authenticating, inside the view
        event = audit.record("kms.key.created", object_type="kms.key", object_id="x")

    assert (event.actor_type, event.actor_id, event.actor_label) == ("user", alice.pk, "alice")
    assert event.source_ip == "192.0.2.10"


def test_drf_authentication_reaches_the_bound_http_request():
    """DRF authenticates in the view; its ``Request.user`` setter copies the user onto the
    Django ``HttpRequest`` the middleware bound, so ``record`` finds token users too."""
    from rest_framework.request import Request

    alice = make_user("alice")
    http_request = _request(REMOTE_ADDR="192.0.2.11")
    with context.bound_request(http_request):
        Request(http_request).user = alice
        via_http = audit.record("kms.key.created", object_type="kms.key", object_id="x")
    with context.bound_request(Request(_request(alice, REMOTE_ADDR="192.0.2.12"))):
        via_drf = audit.record("kms.key.created", object_type="kms.key", object_id="y")

    assert (via_http.actor_id, via_http.source_ip) == (alice.pk, "192.0.2.11")
    assert (via_drf.actor_id, via_drf.source_ip) == (alice.pk, "192.0.2.12")


def test_an_explicit_actor_wins_over_the_request_user():
    alice, bob = make_user("alice"), make_user("bob")
    with context.bound_request(_request(alice)):
        event = audit.record("kms.key.created", object_type="kms.key", object_id="x", actor=bob)

    assert (event.actor_id, event.actor_label) == (bob.pk, "bob")


def test_an_anonymous_request_user_is_not_an_actor():
    from django.contrib.auth.models import AnonymousUser

    with context.bound_request(_request(AnonymousUser())):
        event = audit.record("kms.key.created", object_type="kms.key", object_id="x")

    assert event.actor_type == "system" and event.actor_id is None


def test_a_command_context_names_the_command_and_keeps_an_explicit_user():
    admin = make_user("root")
    with context.command_actor("manage.py bootstrap_demo"):
        plain = audit.record("kms.key.created", object_type="kms.key", object_id="a")
        on_behalf = audit.record(
            "kms.key.created", object_type="kms.key", object_id="b", actor=admin
        )
    after = audit.record("kms.key.created", object_type="kms.key", object_id="c")

    assert (plain.actor_type, plain.actor_label, plain.actor_id) == (
        "command",
        "manage.py bootstrap_demo",
        None,
    )
    assert (on_behalf.actor_type, on_behalf.actor_label, on_behalf.actor_id) == (
        "command",
        "manage.py bootstrap_demo",
        admin.pk,
    )
    assert after.actor_type == "system"


def test_command_actor_works_as_a_decorator_and_is_reset_after_each_call():
    @context.command_actor("manage.py something")
    def handle(number: int) -> AuditEvent:
        return audit.record("kms.key.purged", object_type="kms.key", object_id=str(number))

    first, second = handle(1), handle(2)
    outside = audit.record("kms.key.purged", object_type="kms.key", object_id="3")

    assert [first.actor_label, second.actor_label] == ["manage.py something"] * 2
    assert outside.actor_label == "system"


def test_the_registry_webhook_context_labels_the_instance():
    with context.registry_webhook("prod"):
        event = audit.record(
            "signing.signature.failed", object_type="signing.signature", object_id="1"
        )

    assert (event.actor_type, event.actor_label) == ("registry-webhook", "registry:prod")


# --- source IP --------------------------------------------------------------------------------


def test_x_forwarded_for_is_ignored_unless_trusted(settings):
    request = _request(REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="203.0.113.9, 10.0.0.1")
    with context.bound_request(request):
        untrusted = audit.record("kms.key.created", object_type="kms.key", object_id="x")
        settings.AUDIT_TRUST_X_FORWARDED_FOR = True
        trusted = audit.record("kms.key.created", object_type="kms.key", object_id="y")

    assert untrusted.source_ip == "10.0.0.5"
    # One trusted proxy (the default): the address it appended, the right-most one.
    assert trusted.source_ip == "10.0.0.1"


def test_a_client_supplied_forwarded_address_is_not_taken_as_the_source(settings):
    """A client sends ``X-Forwarded-For: 198.51.100.66`` itself; the trusted proxy appends
    the address it really saw. Only that one is recorded."""
    settings.AUDIT_TRUST_X_FORWARDED_FOR = True
    request = _request(REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="198.51.100.66, 203.0.113.7")
    with context.bound_request(request):
        event = audit.record("kms.key.created", object_type="kms.key", object_id="x")

    assert AuditEvent.objects.get(pk=event.pk).source_ip == "203.0.113.7"


@pytest.mark.parametrize(
    ("count", "expected"),
    [(1, "192.0.2.2"), (2, "203.0.113.7"), (3, "198.51.100.66"), (4, "10.0.0.5")],
    ids=["one-proxy", "two-proxies", "three-proxies", "more-proxies-than-hops"],
)
def test_the_configured_number_of_proxies_picks_the_hop_from_the_right(settings, count, expected):
    settings.AUDIT_TRUST_X_FORWARDED_FOR = True
    settings.AUDIT_TRUSTED_PROXY_COUNT = count
    request = _request(
        REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="198.51.100.66,203.0.113.7 , 192.0.2.2"
    )
    with context.bound_request(request):
        event = audit.record("kms.key.created", object_type="kms.key", object_id="x")

    assert AuditEvent.objects.get(pk=event.pk).source_ip == expected


@pytest.mark.parametrize(
    "forwarded",
    ["not-an-ip", "203.0.113.9, not-an-ip", "203.0.113.9,", "203.0.113.9:8080", " , "],
    ids=["garbage", "garbage-right-most", "trailing-comma", "with-port", "empty-hops"],
)
def test_a_malformed_forwarded_address_falls_back_to_the_peer(settings, forwarded):
    settings.AUDIT_TRUST_X_FORWARDED_FOR = True
    request = _request(REMOTE_ADDR="2001:db8::1", HTTP_X_FORWARDED_FOR=forwarded)
    with context.bound_request(request):
        event = audit.record("kms.key.created", object_type="kms.key", object_id="x")

    assert AuditEvent.objects.get(pk=event.pk).source_ip == "2001:db8::1"


def test_an_ipv6_forwarded_address_is_recorded_in_its_canonical_form(settings):
    settings.AUDIT_TRUST_X_FORWARDED_FOR = True
    request = _request(REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="203.0.113.9, 2001:DB8:0:0::7")
    with context.bound_request(request):
        event = audit.record("kms.key.created", object_type="kms.key", object_id="x")

    assert AuditEvent.objects.get(pk=event.pk).source_ip == "2001:db8::7"


def test_the_middleware_binds_each_request_and_unbinds_it_after_the_response(
    admin_client, admin_user
):
    key = make_key("bound")

    response = admin_client.post(
        reverse("admin:kms_key_changelist"),
        {"action": "disable_keys", "_selected_action": [str(key.pk)], "index": 0},
    )

    assert response.status_code == 302
    assert events("kms.key.state_changed")[0].actor_id == admin_user.pk
    assert context.current_request() is None
    assert context.resolve_actor().type == "system"
    assert audit.record("kms.key.purged", object_type="kms.key", object_id="x").source_ip is None


# --- what is stored ---------------------------------------------------------------------------


def test_fields_named_like_secrets_are_dropped_at_any_depth():
    event = audit.record(
        "registry.instance.created",
        object_type="registry.instance",
        object_id="1",
        changes={"token": ["a", "b"], "name": ["old", "new"]},
        details={
            "webhook_token": "tok-123",
            "Secret": "s",
            "password": "p",
            "private_key": "k",
            "sealed_private_key": "x",
            "master_key": "m",
            "credentials": "c",
            "api_key": "a",
            "nested": {"db_password": "p2", "region": "ap-guangzhou"},
            "list": [{"access_token": "t2", "ok": 1}],
            "sealedSecret": "x2",
            "APIKey": "a2",
            "region": "ap-guangzhou",
            "resealed": 3,
            "key_id": "k-1",
        },
    )

    stored = AuditEvent.objects.get(pk=event.pk)
    assert stored.changes == {"name": ["old", "new"]}
    assert stored.details == {
        "nested": {"region": "ap-guangzhou"},
        "list": [{"ok": 1}],
        "region": "ap-guangzhou",
        "resealed": 3,
        "key_id": "k-1",
    }
    dumped = json.dumps([stored.changes, stored.details])
    for value in ("tok-123", '"s"', '"p"', "p2", "t2", '"k"', '"m"', '"c"', "x2", "a2"):
        assert value not in dumped


def test_private_key_pem_values_and_url_passwords_are_masked():
    pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"
    event = audit.record(
        "signing.signature.failed",
        object_type="signing.signature",
        object_id="1",
        object_repr="http://robot:hunter2@registry.local/v2/",
        details={
            "reason": f"cannot parse {pem}",
            "url": "https://robot:hunter2@registry.local/v2/",
        },
    )

    stored = AuditEvent.objects.get(pk=event.pk)
    assert stored.details == {"reason": "[redacted]", "url": "https://robot:***@registry.local/v2/"}
    assert stored.object_repr == "http://robot:***@registry.local/v2/"
    assert "hunter2" not in json.dumps(stored.details) + stored.object_repr


def test_values_are_stored_as_plain_json():
    when = datetime.datetime(2025, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    ident = uuid.UUID("12345678-1234-5678-1234-567812345678")
    event = audit.record(
        "kms.key.created",
        object_type="kms.key",
        object_id=ident,
        changes={"state": [KeyState.ENABLED, KeyState.DISABLED], "when": [None, when]},
        details={"id": ident, "blob": b"\x00\x01\x02", "tags": {"b", "a"}, "pair": ("x", 1)},
    )

    stored = AuditEvent.objects.get(pk=event.pk)
    assert stored.object_id == str(ident)
    assert stored.changes == {
        "state": ["Enabled", "Disabled"],
        "when": [None, "2025-01-02T03:04:05+00:00"],
    }
    assert stored.details == {
        "id": str(ident),
        "blob": "<3 bytes>",
        "tags": ["a", "b"],
        "pair": ["x", 1],
    }


def test_an_action_that_is_not_a_dotted_code_is_refused():
    before = AuditEvent.objects.count()
    for action in ("created", "KMS.Key.Created", "kms..key", "kms.key.", ""):
        with pytest.raises(ValueError, match="dotted code"):
            audit.record(action, object_type="kms.key", object_id="x")
    assert AuditEvent.objects.count() == before


def test_diff_lists_only_the_changed_fields():
    assert audit.diff({"a": 1, "b": 2, "c": None}, {"a": 1, "b": 3, "d": 4}) == {
        "b": [2, 3],
        "d": [None, 4],
    }


# --- transactions -----------------------------------------------------------------------------


def test_a_rolled_back_change_leaves_no_event():
    key = make_key("rolled-back")
    before = actions()

    with pytest.raises(RuntimeError), transaction.atomic():
        kms_services.disable_key(key_id=str(key.key_id))
        assert events("kms.key.state_changed")  # written inside the transaction...
        raise RuntimeError("something later in the same transaction failed")

    assert actions() == before  # ...and gone with it
    key.refresh_from_db()
    assert key.state == KeyState.ENABLED


def test_a_failed_create_leaves_no_event(key):
    before = actions()

    with pytest.raises(Exception, match="already exists"):
        kms_services.create_key(alias=key.alias)

    assert actions() == before
