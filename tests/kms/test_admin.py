"""The KMS admin: key pages, actions, the public-key download, service authorizations."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from django.contrib.admin.models import LogEntry
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from kms import services
from kms.errors import InvalidParameter
from kms.models import AuthorizedService, Key, KeyState, KeyUsage, ServiceAuthorization
from tests.factories import make_key, make_user

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:kms_key_changelist")
ADD = reverse("admin:kms_key_add")
GRANTS = reverse("admin:kms_serviceauthorization_changelist")
GRANT_ADD = reverse("admin:kms_serviceauthorization_add")
REGISTRY = AuthorizedService.REGISTRY_SIGNING


def change_url(key: Key) -> str:
    return reverse("admin:kms_key_change", args=[key.pk])


def pem_url(key: Key) -> str:
    return reverse("admin:kms_key_public_key_pem", args=[key.pk])


def messages_of(response) -> list[str]:
    """The messages shown on the page a followed response ended on."""
    return [str(message) for message in response.context["messages"]]


def landed_on(response) -> str:
    assert response.redirect_chain, "expected a redirect"
    return response.redirect_chain[-1][0]


def run_action(client, action: str, *keys: Key, url: str = CHANGELIST, **extra):
    data = {"action": action, "_selected_action": [str(key.pk) for key in keys], "index": 0}
    data.update(extra)
    return client.post(url, data, follow=True)


def post_schedule_deletion(client, *keys: Key, days):
    # What the intermediate page posts back (it has no "index" field).
    return client.post(
        CHANGELIST,
        {
            "action": "schedule_deletion",
            "_selected_action": [str(key.pk) for key in keys],
            "pending_window_in_days": days,
            "apply": "Schedule deletion",
        },
        follow=True,
    )


def state_of(key: Key) -> str:
    return Key.objects.values_list("state", flat=True).get(pk=key.pk)


def sealed_forms(key: Key) -> list[str]:
    """Every way the sealed private key could leak into a page."""
    sealed = bytes(Key.objects.get(pk=key.pk).sealed_private_key)
    return [base64.b64encode(sealed).decode(), sealed.hex(), base64.b64encode(sealed[:24]).decode()]


@pytest.fixture
def viewer_client(client):
    """Staff who may look at keys but not change their state."""
    client.force_login(make_user("viewer", perms=["kms.view_key", "kms.change_key"], is_staff=True))
    return client


@pytest.fixture
def manager_client(client):
    """Staff with exactly the permissions the key-state actions need."""
    client.force_login(
        make_user("manager", perms=["kms.view_key", "kms.manage_key_state"], is_staff=True)
    )
    return client


# --- changelist -------------------------------------------------------------------------


def test_the_changelist_lists_keys_with_filters_and_search(admin_client):
    guangzhou = make_key("gz-signer", region="ap-guangzhou")
    shanghai = make_key("sh-signer", region="ap-shanghai", key_usage=KeyUsage.ECC)
    services.disable_key(key_id=str(shanghai.key_id))

    response = admin_client.get(CHANGELIST)
    body = response.content.decode()
    assert response.status_code == 200
    assert "gz-signer" in body and "sh-signer" in body
    assert str(guangzhou.key_id) in body
    for heading in ("By state", "By key usage", "By region"):
        assert heading in body
    assert "?region=ap-singapore" in body  # the regions come from settings

    def listed(query: str) -> set[str]:
        page = admin_client.get(CHANGELIST + query)
        assert page.status_code == 200
        return {key.alias for key in page.context["cl"].result_list}

    assert listed("?state=Disabled") == {"sh-signer"}
    assert listed("?region=ap-guangzhou") == {"gz-signer"}
    assert listed(f"?key_usage={KeyUsage.ECC}") == {"sh-signer"}
    assert listed("?q=gz-") == {"gz-signer"}
    assert listed(f"?q={shanghai.key_id}") == {"sh-signer"}


def test_the_changelist_query_count_does_not_grow_with_the_number_of_keys(admin_client):
    def count_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            response = admin_client.get(CHANGELIST)
        assert response.status_code == 200
        return len(queries)

    for index in range(3):
        make_key(f"few-{index}", key_usage=KeyUsage.ECC)
    few = count_queries()
    for index in range(27):
        make_key(f"many-{index}", key_usage=KeyUsage.ECC)
    many = count_queries()
    assert Key.objects.count() == 30
    assert few > 0
    assert many == few


def test_the_changelist_never_loads_the_sealed_private_key(admin_client):
    make_key("signer", key_usage=KeyUsage.ECC)
    with CaptureQueriesContext(connection) as queries:
        admin_client.get(CHANGELIST)
    key_queries = [q["sql"] for q in queries if '"kms_key"' in q["sql"]]
    assert key_queries
    assert not any("sealed_private_key" in sql for sql in key_queries)


# --- adding -----------------------------------------------------------------------------


def test_the_add_form_offers_the_configured_regions_and_usages(admin_client):
    response = admin_client.get(ADD)
    body = response.content.decode()
    assert response.status_code == 200
    assert '<option value="ap-hongkong">' in body
    assert f'<option value="{KeyUsage.ECC}">' in body
    assert 'name="state"' not in body


def test_the_add_form_creates_a_key_through_the_service(admin_client, superuser):
    response = admin_client.post(
        ADD,
        {
            "alias": "release-signer",
            "description": "signs releases",
            "region": "ap-shanghai",
            "key_usage": KeyUsage.ECC,
        },
        follow=True,
    )

    assert response.status_code == 200
    key = Key.objects.get(alias="release-signer")
    assert (key.region, key.key_usage, key.key_spec) == (
        "ap-shanghai",
        KeyUsage.ECC,
        "ECC_NIST_P256",
    )
    assert key.state == KeyState.ENABLED
    assert key.created_by == superuser
    assert key.master_key_version == 1
    assert len(bytes(key.sealed_private_key)) > 32
    assert "PRIVATE KEY" not in response.content.decode()
    assert LogEntry.objects.filter(object_id=str(key.pk), action_flag=1).exists()


@pytest.mark.parametrize(
    "alias, expected",
    [
        ("bad alias!", "Alias must be 1-60 letters"),
        ("kms-internal", "The alias prefix 'kms-' is reserved."),
    ],
)
def test_the_add_form_shows_the_service_message_for_an_invalid_alias(admin_client, alias, expected):
    response = admin_client.post(
        ADD,
        {
            "alias": alias,
            "description": "",
            "region": "ap-guangzhou",
            "key_usage": KeyUsage.RSA_2048,
        },
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert any(expected in message for message in errors["alias"])
    assert not Key.objects.exists()


def test_the_add_form_shows_the_same_region_message_as_the_api(admin_client):
    response = admin_client.post(
        ADD,
        {
            "alias": "signer",
            "description": "",
            "region": "mars",
            "key_usage": KeyUsage.RSA_2048,
        },
    )
    assert response.status_code == 200
    with pytest.raises(InvalidParameter) as api_error:
        services.validate_key_fields(
            alias="signer", description="", region="mars", key_usage=KeyUsage.RSA_2048
        )
    assert response.context["adminform"].form.errors["region"] == api_error.value.fields["region"]
    assert not Key.objects.exists()


def test_a_duplicate_alias_is_a_form_error_not_a_server_error(admin_client):
    existing = make_key("taken", key_usage=KeyUsage.ECC)
    response = admin_client.post(
        ADD,
        {
            "alias": "taken",
            "description": "",
            "region": "ap-beijing",
            "key_usage": KeyUsage.ECC,
        },
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["alias"] == [
        "A key with alias 'taken' already exists."
    ]
    assert list(Key.objects.values_list("pk", "region")) == [(existing.pk, "ap-guangzhou")]


# --- change page ------------------------------------------------------------------------


def test_the_change_page_shows_the_public_key_and_its_download_link(admin_client):
    key = make_key("signer")
    response = admin_client.get(change_url(key))
    body = response.content.decode()
    assert response.status_code == 200
    assert f'<pre class="kms-public-key">{key.public_key_pem}</pre>' in body
    assert f'href="{pem_url(key)}"' in body
    assert key.public_key_fingerprint in body
    assert "PRIVATE KEY" not in body
    assert "master key version" not in body.lower()


def test_only_the_description_can_be_changed_after_creation(admin_client):
    key = make_key("signer", key_usage=KeyUsage.ECC)
    response = admin_client.post(
        change_url(key),
        {
            "description": "rotated yearly",
            "alias": "renamed",
            "region": "ap-beijing",
            "key_usage": KeyUsage.RSA_2048,
            "state": KeyState.DISABLED,
        },
    )
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.description == "rotated yearly"
    assert (key.alias, key.region, key.key_usage, key.state) == (
        "signer",
        "ap-guangzhou",
        KeyUsage.ECC,
        KeyState.ENABLED,
    )


def test_a_too_long_description_is_a_form_error(admin_client):
    key = make_key("signer", key_usage=KeyUsage.ECC, description="before")
    response = admin_client.post(change_url(key), {"description": "é" * 600})
    assert response.status_code == 200
    assert "at most 1024 bytes" in response.context["adminform"].form.errors["description"][0]
    key.refresh_from_db()
    assert key.description == "before"


def test_keys_cannot_be_deleted_through_the_admin(admin_client):
    key = make_key("signer", key_usage=KeyUsage.ECC)
    response = admin_client.get(reverse("admin:kms_key_delete", args=[key.pk]))
    assert response.status_code == 403
    changelist = admin_client.get(CHANGELIST)
    assert "delete_selected" not in changelist.content.decode()
    assert Key.objects.filter(pk=key.pk).exists()


# --- public key download ------------------------------------------------------------------


def test_the_public_key_downloads_as_a_pem_file(admin_client):
    key = make_key("release-signer")
    response = admin_client.get(pem_url(key))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-pem-file"
    assert response["Content-Disposition"] == 'attachment; filename="release-signer.pem"'
    public = serialization.load_pem_public_key(response.content)
    assert public.key_size == 2048
    assert response.content.decode() == key.public_key_pem


def test_the_public_key_download_needs_view_permission(client):
    key = make_key("signer", key_usage=KeyUsage.ECC)
    client.force_login(make_user("stranger", perms=["kms.use_key"], is_staff=True))
    response = client.get(pem_url(key))
    assert response.status_code == 403
    client.logout()
    anonymous = client.get(pem_url(key))
    assert anonymous.status_code == 302
    assert "/admin/login/" in anonymous["Location"]


def test_the_public_key_download_of_an_unknown_key_is_a_404(admin_client):
    assert (
        admin_client.get(pem_url(Key(key_id="00000000-0000-0000-0000-000000000000"))).status_code
        == 404
    )
    assert admin_client.get("/admin/kms/key/not-a-uuid/public-key.pem").status_code == 404


def test_a_viewer_can_download_the_public_key_of_a_disabled_key(viewer_client):
    key = make_key("signer", key_usage=KeyUsage.ECC)
    services.disable_key(key_id=str(key.key_id))
    response = viewer_client.get(pem_url(key))
    assert response.status_code == 200
    assert response.content.decode() == key.public_key_pem


# --- state actions ------------------------------------------------------------------------


def test_the_disable_and_enable_actions_change_the_state(manager_client):
    first = make_key("first", key_usage=KeyUsage.ECC)
    second = make_key("second", key_usage=KeyUsage.ECC)

    response = run_action(manager_client, "disable_keys", first, second)
    assert landed_on(response) == CHANGELIST
    assert messages_of(response) == ["first: disabled.", "second: disabled."]
    assert {state_of(first), state_of(second)} == {KeyState.DISABLED}

    response = run_action(manager_client, "enable_keys", first)
    assert messages_of(response) == ["first: enabled."]
    assert (state_of(first), state_of(second)) == (KeyState.ENABLED, KeyState.DISABLED)
    assert LogEntry.objects.filter(object_id=str(first.pk), change_message="Enabled").exists()


def test_the_cancel_deletion_action_leaves_the_key_disabled(manager_client):
    key = make_key("signer", key_usage=KeyUsage.ECC)
    services.disable_key(key_id=str(key.key_id))
    services.schedule_key_deletion(key_id=str(key.key_id), pending_window_in_days=7)

    response = run_action(manager_client, "cancel_deletion", key)

    assert messages_of(response) == ["signer: deletion cancelled; the key is Disabled."]
    key.refresh_from_db()
    assert (key.state, key.deletion_date) == (KeyState.DISABLED, None)


def test_a_refused_action_reports_the_domain_error_and_changes_nothing(manager_client):
    enabled = make_key("live", key_usage=KeyUsage.ECC)
    pending = make_key("doomed", key_usage=KeyUsage.ECC)
    services.disable_key(key_id=str(pending.key_id))
    services.schedule_key_deletion(key_id=str(pending.key_id), pending_window_in_days=7)

    response = run_action(manager_client, "cancel_deletion", enabled)
    assert landed_on(response) == CHANGELIST
    assert messages_of(response) == [
        "live: Key live is Enabled; this operation needs it to be PendingDelete."
    ]
    response = run_action(manager_client, "enable_keys", pending)
    assert messages_of(response) == [
        "doomed: Key doomed is pending deletion; cancel the deletion first."
    ]
    assert (state_of(enabled), state_of(pending)) == (KeyState.ENABLED, KeyState.PENDING_DELETE)


def test_an_action_reports_each_key_on_its_own(manager_client):
    enabled = make_key("live", key_usage=KeyUsage.ECC)
    disabled = make_key("idle", key_usage=KeyUsage.ECC)
    services.disable_key(key_id=str(disabled.key_id))

    response = post_schedule_deletion(manager_client, enabled, disabled, days=7)

    assert messages_of(response) == [
        "idle: deletion scheduled in 7 days.",
        "live: Key live is Enabled; disable it before scheduling its deletion.",
    ]
    assert (state_of(enabled), state_of(disabled)) == (KeyState.ENABLED, KeyState.PENDING_DELETE)


def test_scheduling_deletion_first_shows_a_form_for_the_pending_window(manager_client):
    key = make_key("signer", key_usage=KeyUsage.ECC)
    services.disable_key(key_id=str(key.key_id))

    response = manager_client.post(
        CHANGELIST,
        {
            "action": "schedule_deletion",
            "_selected_action": [str(key.pk)],
        },
    )

    body = response.content.decode()
    assert response.status_code == 200
    assert "Schedule key deletion" in body
    assert 'name="pending_window_in_days" value="7"' in body
    assert f'name="_selected_action" value="{key.pk}"' in body
    assert state_of(key) == KeyState.DISABLED


def test_the_schedule_deletion_page_warns_about_enabled_keys(manager_client):
    key = make_key("live", key_usage=KeyUsage.ECC)
    response = run_action(manager_client, "schedule_deletion", key)
    assert response.status_code == 200
    assert "these are Enabled and will be refused" in response.content.decode()


@pytest.mark.parametrize(
    "days, error",
    [
        ("3", "greater than or equal to 7"),
        ("31", "less than or equal to 30"),
        ("abc", "Enter a whole number."),
        ("", "This field is required."),
    ],
)
def test_an_invalid_pending_window_shows_the_form_again(manager_client, days, error):
    key = make_key("signer", key_usage=KeyUsage.ECC)
    services.disable_key(key_id=str(key.key_id))

    response = post_schedule_deletion(manager_client, key, days=days)

    assert response.status_code == 200
    assert error in response.content.decode()
    assert response.context["form"].errors["pending_window_in_days"]
    key.refresh_from_db()
    assert (key.state, key.deletion_date) == (KeyState.DISABLED, None)


def test_a_valid_pending_window_schedules_the_deletion(manager_client):
    key = make_key("signer", key_usage=KeyUsage.ECC)
    services.disable_key(key_id=str(key.key_id))
    before = timezone.now()

    response = post_schedule_deletion(manager_client, key, days="10")

    assert landed_on(response) == CHANGELIST
    assert messages_of(response) == ["signer: deletion scheduled in 10 days."]
    key.refresh_from_db()
    assert key.state == KeyState.PENDING_DELETE
    assert before + timedelta(days=10) <= key.deletion_date <= timezone.now() + timedelta(days=10)


def test_staff_without_manage_key_state_see_no_actions_and_cannot_post_them(viewer_client):
    key = make_key("signer", key_usage=KeyUsage.ECC)
    response = viewer_client.get(CHANGELIST)
    body = response.content.decode()
    assert response.status_code == 200
    assert response.context["action_form"] is None
    assert "disable_keys" not in body and "schedule_deletion" not in body

    response = run_action(viewer_client, "disable_keys", key)
    assert state_of(key) == KeyState.ENABLED
    change_page = viewer_client.get(change_url(key))
    assert 'value="disable_keys"' not in change_page.content.decode()


def test_a_manager_sees_the_state_actions(manager_client):
    make_key("signer", key_usage=KeyUsage.ECC)
    body = manager_client.get(CHANGELIST).content.decode()
    for action in ("enable_keys", "disable_keys", "schedule_deletion", "cancel_deletion"):
        assert f'value="{action}"' in body


def test_the_change_page_buttons_run_the_action_and_come_back(manager_client):
    key = make_key("signer", key_usage=KeyUsage.ECC)
    page = manager_client.get(change_url(key)).content.decode()
    assert 'value="disable_keys"' in page and 'value="enable_keys"' not in page

    response = run_action(manager_client, "disable_keys", key, _from_change_page="1")

    assert landed_on(response) == change_url(key)
    assert messages_of(response) == ["signer: disabled."]
    assert state_of(key) == KeyState.DISABLED
    page = manager_client.get(change_url(key)).content.decode()
    assert 'value="enable_keys"' in page and 'value="schedule_deletion"' in page


# --- secrets never shown ------------------------------------------------------------------


def test_no_admin_page_shows_the_sealed_private_key(admin_client):
    key = make_key("signer")
    admin_client.post(change_url(key), {"description": "changed"})
    services.disable_key(key_id=str(key.key_id))
    pages = {
        "changelist": admin_client.get(CHANGELIST),
        "search": admin_client.get(CHANGELIST + "?q=signer"),
        "change": admin_client.get(change_url(key)),
        "history": admin_client.get(reverse("admin:kms_key_history", args=[key.pk])),
        "schedule deletion": run_action(admin_client, "schedule_deletion", key),
        "pem": admin_client.get(pem_url(key)),
    }
    leaks = sealed_forms(key)
    for name, response in pages.items():
        assert response.status_code == 200, name
        body = response.content.decode()
        assert "PRIVATE KEY" not in body, name
        assert "sealed" not in body.lower(), name
        for leak in leaks:
            assert leak not in body, name
    assert "Changed Description." in pages["history"].content.decode()


# --- service authorizations ---------------------------------------------------------------


def test_adding_a_service_authorization_grants_it(admin_client, superuser):
    form = admin_client.get(GRANT_ADD).content.decode()
    assert 'name="service"' in form and 'name="note"' in form
    assert 'name="revoked_at"' not in form

    response = admin_client.post(GRANT_ADD, {"service": REGISTRY, "note": "ticket 42"})

    assert response.status_code == 302
    grant = ServiceAuthorization.objects.get()
    assert (grant.service, grant.note, grant.granted_by) == (REGISTRY, "ticket 42", superuser)
    assert grant.is_active
    assert services.is_service_authorized(REGISTRY)


def test_granting_an_active_authorization_again_is_a_form_error(admin_client):
    services.grant_service_authorization(service=REGISTRY, note="first")
    response = admin_client.post(GRANT_ADD, {"service": REGISTRY, "note": "second"})
    assert response.status_code == 200
    assert "already authorized" in response.context["adminform"].form.errors["service"][0]
    assert list(ServiceAuthorization.objects.values_list("note", flat=True)) == ["first"]


def test_the_revoke_action_revokes_and_keeps_the_record(admin_client, superuser):
    grant = services.grant_service_authorization(service=REGISTRY)
    response = run_action(admin_client, "revoke", grant, url=GRANTS, confirmed="yes")
    assert landed_on(response) == GRANTS
    assert messages_of(response) == ["Registry image-signing service: authorization revoked."]
    grant.refresh_from_db()
    assert grant.revoked_at is not None and grant.revoked_by == superuser
    assert not services.is_service_authorized(REGISTRY)

    again = run_action(admin_client, "revoke", grant, url=GRANTS)
    assert messages_of(again) == ["Registry image-signing service: this grant was already revoked."]
    listing = admin_client.get(GRANTS)
    assert listing.status_code == 200
    assert [row.pk for row in listing.context["cl"].result_list] == [grant.pk]


def test_service_authorization_records_are_read_only(admin_client):
    grant = services.grant_service_authorization(service=REGISTRY, note="original")
    url = reverse("admin:kms_serviceauthorization_change", args=[grant.pk])
    page = admin_client.get(url)
    assert page.status_code == 200
    assert 'name="note"' not in page.content.decode()
    assert admin_client.post(url, {"service": REGISTRY, "note": "edited"}).status_code == 403
    delete = reverse("admin:kms_serviceauthorization_delete", args=[grant.pk])
    assert admin_client.get(delete).status_code == 403
    grant.refresh_from_db()
    assert (grant.note, grant.revoked_at) == ("original", None)


def test_staff_without_change_permission_cannot_revoke(client):
    grant = services.grant_service_authorization(service=REGISTRY)
    client.force_login(make_user("auditor", perms=["kms.view_serviceauthorization"], is_staff=True))
    listing = client.get(GRANTS)
    assert listing.status_code == 200
    assert listing.context["action_form"] is None
    client.post(GRANTS, {"action": "revoke", "_selected_action": [str(grant.pk)], "index": 0})
    assert services.is_service_authorized(REGISTRY)
