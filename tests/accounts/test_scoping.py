"""Scoping beyond the matrix: out-of-scope writes are 404, in-scope readers' writes 403,
memberships narrowed to namespaces, the admin's actions, buttons and pickers, the
audit log, API tokens, and no anonymous access."""

from __future__ import annotations

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.test import Client
from django.urls import reverse
from knox.crypto import hash_token
from rest_framework.test import APIClient

from accounts.backends import MembershipBackend
from accounts.models import Role
from accounts.scoping import visible_instances, visible_namespaces
from apitokens.models import ApiToken
from audit import services as audit
from audit.models import AuditEvent
from registry.models import Tag
from signing.models import Signature, SigningPolicy
from tests.accounts.conftest import Scene, client_for, snapshot
from tests.accounts.support import grant
from tests.factories import make_token, make_user

pytestmark = [pytest.mark.django_db, pytest.mark.registry_server]

SIG = "/api/v1/signing"
REG = "/api/v1/registry"


def token_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {make_token(user)}")
    return client


def names(response) -> list[str]:
    return sorted(row["name"] for row in response.json()["results"])


# --- the API -----------------------------------------------------------------------------


def test_an_operator_of_another_instance_gets_404_for_prods_objects(scene: Scene):
    outsider = make_user("outsider")
    grant(outsider, scene.elsewhere, role=Role.OPERATOR)
    api = token_client(outsider)
    before = snapshot()

    responses = {
        "patch policy": api.patch(
            f"{SIG}/policies/{scene.policy.pk}/", {"disabled": True}, format="json"
        ),
        "delete policy": api.delete(f"{SIG}/policies/{scene.policy.pk}/"),
        "resign": api.post(f"{SIG}/policies/{scene.policy.pk}/resign/"),
        "retry signature": api.post(f"{SIG}/signatures/{scene.signed.pk}/retry/"),
        "sign tag": api.post(f"{REG}/tags/{scene.v2.pk}/sign/"),
        "sign": api.post(f"{SIG}/sign/", {"instance": "prod", "namespace": "team"}, format="json"),
        "verify": api.post(
            f"{SIG}/verify/", {"image": f"{scene.domain}/team/app:v1"}, format="json"
        ),
    }
    created = api.post(
        f"{SIG}/policies/",
        {"instance": "prod", "namespace": "other", "name": "p", "key": str(scene.key.key_id)},
        format="json",
    )

    assert {name: r.status_code for name, r in responses.items()} == dict.fromkeys(responses, 404)
    # Creating names the instance in the body: answered like an unknown instance.
    assert created.status_code == 400 and "instance" in created.json()["fields"]
    assert snapshot() == before


def test_a_reader_of_prod_who_operates_elsewhere_gets_403_for_prods_writes(scene: Scene):
    user = make_user("mixed")
    grant(user, scene.prod, role=Role.READER)
    grant(user, scene.elsewhere, role=Role.OPERATOR)
    api = token_client(user)
    before = snapshot()

    responses = [
        api.patch(f"{SIG}/policies/{scene.policy.pk}/", {"disabled": True}, format="json"),
        api.delete(f"{SIG}/policies/{scene.policy.pk}/"),
        api.post(f"{SIG}/policies/{scene.policy.pk}/retry/"),
        api.post(f"{SIG}/signatures/{scene.signed.pk}/retry/"),
        api.post(f"{REG}/tags/{scene.v2.pk}/sign/"),
        api.post(f"{SIG}/sign/", {"instance": "prod", "namespace": "team"}, format="json"),
        api.post(
            f"{SIG}/policies/",
            {"instance": "prod", "namespace": "other", "name": "p", "key": str(scene.key.key_id)},
            format="json",
        ),
    ]

    assert [r.status_code for r in responses] == [403] * len(responses)
    assert all(r.json()["code"] == "UnauthorizedOperation" for r in responses)
    assert api.get(f"{SIG}/policies/{scene.policy.pk}/").status_code == 200
    assert snapshot() == before


def test_lists_show_only_the_granted_instances(scene: Scene):
    reader = client_for(scene, "reader")
    other = client_for(scene, "other")

    assert names(reader.get(f"{REG}/instances/")) == ["prod"]
    assert names(other.get(f"{REG}/instances/")) == ["elsewhere"]
    assert names(other.get(f"{REG}/namespaces/")) == ["ext"]
    assert other.get(f"{REG}/tags/").json()["count"] == 0
    assert other.get(f"{SIG}/policies/").json()["count"] == 0
    assert other.get(f"{SIG}/signatures/").json()["count"] == 0
    assert reader.get(f"{REG}/tags/").json()["count"] == Tag.objects.count()
    assert reader.get(f"{SIG}/signatures/").json()["count"] == Signature.objects.count()


def test_a_membership_narrowed_to_a_namespace_hides_the_others(scene: Scene):
    user = make_user("narrow")
    grant(user, scene.prod, role=Role.OPERATOR, namespaces=[scene.other_ns])
    api = token_client(user)

    assert names(api.get(f"{REG}/namespaces/")) == ["other"]
    assert api.get(f"{REG}/tags/").json()["count"] == 0  # team's tags are hidden
    assert api.get(f"{SIG}/policies/{scene.policy.pk}/").status_code == 404
    assert api.post(f"{REG}/tags/{scene.v2.pk}/sign/").status_code == 404
    refused = api.post(
        f"{SIG}/policies/",
        {"instance": "prod", "namespace": "team", "name": "p", "key": str(scene.key.key_id)},
        format="json",
    )
    assert refused.status_code == 400  # team is not a namespace it can see
    created = api.post(
        f"{SIG}/policies/",
        {
            "instance": "prod",
            "namespace": "other",
            "name": "other-policy",
            "key": str(scene.key.key_id),
        },
        format="json",
    )
    assert created.status_code == 201
    assert SigningPolicy.objects.filter(namespace=scene.other_ns).exists()
    assert list(visible_namespaces(user)) == [scene.other_ns]
    assert list(visible_instances(user)) == [scene.prod]


def test_the_backend_grants_role_permissions_on_the_granted_objects_only(scene: Scene):
    backend = MembershipBackend()
    reader, operator = scene.users["reader"], scene.users["operator"]

    assert backend.has_perm(reader, "signing.view_signingpolicy", scene.policy)
    assert not backend.has_perm(reader, "signing.change_signingpolicy", scene.policy)
    assert backend.has_perm(operator, "signing.sign_images", scene.v2)
    assert not backend.has_perm(scene.users["other"], "registry.view_tag", scene.v2)
    assert backend.has_perm(scene.users["other"], "kms.view_key", scene.key)  # unscoped
    # Key management is never a role's.
    assert not backend.has_perm(operator, "kms.add_key")
    assert not backend.has_perm(operator, "kms.manage_key_state", scene.key)
    assert backend.has_module_perms(reader, "signing")
    # Readers read their scope's audit log (the queryset is scoped, see audit.scoping).
    assert backend.has_module_perms(reader, "audit")
    assert backend.has_perm(reader, "audit.view_auditevent")


EVENTS = "/api/v1/audit/events/"


def audit_rows(api: APIClient, **params) -> list[dict]:
    response = api.get(EVENTS, {"limit": 500, **params})
    assert response.status_code == 200, response.content
    assert response.json()["count"] == len(response.json()["results"])
    return response.json()["results"]


def _other_created() -> AuditEvent:
    """The event of the scene's namespace ``other`` being created."""
    return AuditEvent.objects.get(action="registry.namespace.created", namespace_name="other")


@pytest.fixture
def other_events(scene: Scene) -> dict[str, AuditEvent]:
    """Events besides the scene's: KMS administration (no instance), one of elsewhere,
    and one about prod's namespace ``other``."""
    return {
        "kms": audit.record("kms.key.created", object_type="kms.key", object_id="k"),
        "elsewhere": audit.record(
            "registry.instance.created",
            object_type="registry.instance",
            object_id="x",
            instance_name="elsewhere",
        ),
        "other": audit.record(
            "signing.policy.created",
            object_type="signing.signingpolicy",
            object_id="99",
            object_repr="other-policy",
            instance_name="prod",
            namespace_name="other",
        ),
    }


def test_the_audit_api_shows_a_reader_its_instances_events_only(scene: Scene, other_events):
    reader = scene.users["reader"]  # a plain reader of prod: no permission of its own
    assert not reader.user_permissions.exists() and not reader.groups.exists()
    api = client_for(scene, "reader")

    rows = audit_rows(api)

    prod_events = AuditEvent.objects.filter(instance_name="prod")
    assert sorted(row["id"] for row in rows) == sorted(prod_events.values_list("pk", flat=True))
    # The whole instance: its instance-wide events and those of each of its namespaces.
    assert {row["namespace_name"] for row in rows} >= {"", "team", "other"}
    assert api.get(f"{EVENTS}{other_events['kms'].pk}/").status_code == 404
    assert api.get(f"{EVENTS}{other_events['elsewhere'].pk}/").status_code == 404
    assert api.get(f"{EVENTS}{scene.event.pk}/").status_code == 200
    assert api.get(f"{EVENTS}{other_events['other'].pk}/").status_code == 200
    # Filters narrow the scope, never widen it.
    assert audit_rows(api, instance="elsewhere") == []
    assert audit_rows(api, action="kms.key.*") == []
    # The namespace's own creation, and the event about its policy.
    assert [row["id"] for row in audit_rows(api, namespace="other")] == [
        other_events["other"].pk,
        _other_created().pk,
    ]


@pytest.fixture
def narrowed(scene: Scene):
    """A reader of prod's namespace ``other`` only."""
    user = make_user("narrow-reader", is_staff=True)
    grant(user, scene.prod, role=Role.READER, namespaces=[scene.other_ns])
    return user


def test_a_membership_narrowed_to_a_namespace_reads_that_namespaces_events_only(
    scene: Scene, other_events, narrowed
):
    team_events = AuditEvent.objects.filter(instance_name="prod", namespace_name="team")
    assert team_events.filter(action="signing.policy.created").exists()  # the scene's policy
    assert team_events.filter(action="signing.sign.requested").exists()
    api = token_client(narrowed)

    rows = audit_rows(api)

    assert [row["id"] for row in rows] == [other_events["other"].pk, _other_created().pk]
    assert audit_rows(api, namespace="team") == []
    assert audit_rows(api, instance="prod", namespace="") == []
    hidden = [*team_events, scene.event, other_events["kms"], other_events["elsewhere"]]
    assert scene.event.namespace_name == ""  # instance-wide: not for namespace members
    for event in hidden:
        response = api.get(f"{EVENTS}{event.pk}/")
        assert response.status_code == 404, (event.action, event.namespace_name)
        assert response.json()["code"] == "ResourceNotFound"
    shown = api.get(f"{EVENTS}{other_events['other'].pk}/")
    assert shown.status_code == 200 and shown.json()["object_repr"] == "other-policy"


def test_the_admin_shows_a_narrowed_membership_its_namespaces_events_only(
    scene: Scene, other_events, narrowed
):
    client = Client()
    client.force_login(narrowed)
    changelist = reverse("admin:audit_auditevent_changelist")
    team_policy_event = AuditEvent.objects.get(
        action="signing.policy.created", namespace_name="team"
    )

    response = client.get(changelist)
    narrowed_choices = client.get(changelist, {"namespace_name": "team"})

    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [other_events["other"], _other_created()]
    page = response.content.decode()
    assert "team-policy" not in page and "team/app" not in page
    # The namespace filter offers the namespaces the user may see (never the audit table).
    namespace_filter = next(
        spec
        for spec in response.context["cl"].filter_specs
        if getattr(spec, "parameter_name", None) == "namespace_name"
    )
    assert list(namespace_filter.lookup_choices) == [("other", "prod / other")]
    assert list(narrowed_choices.context["cl"].result_list) == []

    def change(event: AuditEvent):
        return client.get(reverse("admin:audit_auditevent_change", args=[event.pk]))

    shown = change(other_events["other"])
    assert shown.status_code == 200 and "other-policy" in shown.content.decode()
    for event in (team_policy_event, scene.event, other_events["kms"]):
        hidden = change(event)
        assert hidden.status_code == 302, event.action  # "does not exist", to the index
        assert hidden["Location"] == reverse("admin:index")
    assert change(AuditEvent(pk=999999)).status_code == 302  # the same as a missing id
    # A reader of the whole instance opens the team event.
    whole = Client()
    whole.force_login(scene.users["reader"])
    assert (
        whole.get(reverse("admin:audit_auditevent_change", args=[team_policy_event.pk])).status_code
        == 200
    )


# --- tokens and anonymous access ------------------------------------------------------------


def test_a_user_creates_rotates_and_revokes_its_own_token(scene: Scene):
    user = scene.users["reader"]
    old = scene.tokens["reader"]
    api = client_for(scene, "reader")

    rotated = api.post("/api/v1/auth/token/")
    new = rotated.json()["token"]
    with_old = api.get(f"{REG}/instances/")
    fresh = APIClient()
    fresh.credentials(HTTP_AUTHORIZATION=f"Token {new}")
    with_new = fresh.get(f"{REG}/instances/")
    revoked = fresh.delete("/api/v1/auth/token/")
    after = fresh.get(f"{REG}/instances/")

    assert rotated.status_code == 201 and new != old
    assert ApiToken.objects.filter(user=user).count() == 0
    assert with_old.status_code == 401
    assert with_new.status_code == 200
    assert revoked.status_code == 204
    assert after.status_code == 401


def test_a_signed_in_session_can_get_a_token(scene: Scene):
    session = APIClient(enforce_csrf_checks=False)
    session.force_login(scene.users["operator"])
    ApiToken.objects.filter(user=scene.users["operator"]).delete()

    response = session.post("/api/v1/auth/token/")

    assert response.status_code == 201
    row = ApiToken.objects.get(user=scene.users["operator"])
    assert row.digest == hash_token(response.json()["token"])


def test_nothing_but_the_health_check_and_the_webhook_is_anonymous(scene: Scene, client):
    from django.conf import settings

    assert settings.REST_FRAMEWORK["DEFAULT_PERMISSION_CLASSES"] == [
        "rest_framework.permissions.IsAuthenticated"
    ]
    assert client.get("/healthz").status_code == 200
    admin_page = client.get("/admin/")
    assert admin_page.status_code == 302 and "/login/" in admin_page["Location"]
    tags = client.get(reverse("admin:registry_tag_changelist"))
    assert tags.status_code == 302 and "/login/" in tags["Location"]


# --- the admin ---------------------------------------------------------------------------


def admin_client(scene: Scene, persona: str) -> Client:
    client = Client()
    client.force_login(scene.users[persona])
    return client


def test_the_admin_hides_an_object_outside_the_scope(scene: Scene):
    other = admin_client(scene, "other")
    url = reverse("admin:signing_signingpolicy_change", args=[scene.policy.pk])

    response = other.get(url)

    assert response.status_code == 302  # "does not exist", back to the index
    assert admin_client(scene, "reader").get(url).status_code == 200


def test_a_reader_cannot_sign_from_the_admin(scene: Scene):
    reader = admin_client(scene, "reader")
    outsider = make_user("outsider", is_staff=True)
    grant(outsider, scene.elsewhere, role=Role.OPERATOR)
    hidden = Client()
    hidden.force_login(outsider)
    before = snapshot()

    action = reader.post(
        reverse("admin:registry_tag_changelist"),
        {
            "action": "sign_selected",
            ACTION_CHECKBOX_NAME: [scene.v2.pk],
        },
    )
    row = reader.post(reverse("admin:registry_tag_sign", args=[scene.v2.pk]))
    out_of_scope = hidden.post(reverse("admin:registry_tag_sign", args=[scene.v2.pk]))

    assert action.status_code == 302  # not an action of this user: "no action selected"
    page = reader.get(reverse("admin:registry_tag_changelist")).content.decode()
    assert "sign_selected" not in page
    assert row.status_code == 403
    assert out_of_scope.status_code == 404
    assert snapshot() == before


def test_the_sign_action_skips_tags_the_user_may_only_read(scene: Scene):
    user = make_user("mixed", is_staff=True)
    grant(user, scene.prod, role=Role.OPERATOR, namespaces=[scene.other_ns])
    grant(user, scene.elsewhere, role=Role.OPERATOR)
    client = Client()
    client.force_login(user)
    before = snapshot()

    response = client.post(
        reverse("admin:registry_tag_changelist"),
        {
            "action": "sign_selected",
            ACTION_CHECKBOX_NAME: [scene.v2.pk],
        },
    )

    assert response.status_code in (200, 302)
    assert snapshot() == before  # v2 is in team, which this user cannot even see


def test_an_operator_signs_from_the_admin(scene: Scene):
    operator = admin_client(scene, "operator")

    response = operator.post(
        reverse("admin:registry_tag_changelist"),
        {
            "action": "sign_selected",
            ACTION_CHECKBOX_NAME: [scene.v2.pk],
        },
    )

    assert response.status_code == 302
    assert Signature.objects.filter(manifest=scene.v2.manifest).exists()


def test_the_policy_namespace_picker_offers_only_operable_namespaces(scene: Scene):
    user = make_user("picker", is_staff=True)
    grant(user, scene.prod, role=Role.OPERATOR, namespaces=[scene.other_ns])
    client = Client()
    client.force_login(user)

    response = client.get(reverse("admin:signing_signingpolicy_add"))

    assert response.status_code == 200
    choices = list(response.context["adminform"].form.fields["namespace"].queryset)
    assert choices == [scene.other_ns]
    reader_add = admin_client(scene, "reader").get(reverse("admin:signing_signingpolicy_add"))
    assert reader_add.status_code == 403


def test_an_in_scope_reader_cannot_change_or_delete_a_policy_in_the_admin(scene: Scene):
    reader = admin_client(scene, "reader")
    before = snapshot()

    change = reader.post(
        reverse("admin:signing_signingpolicy_change", args=[scene.policy.pk]),
        {"name": "renamed", "key": str(scene.key.key_id), "domain": "", "disabled": "on"},
    )
    delete = reader.post(
        reverse("admin:signing_signingpolicy_delete", args=[scene.policy.pk]), {"post": "yes"}
    )

    assert change.status_code == 403
    assert delete.status_code == 403
    assert snapshot() == before


def test_memberships_are_managed_by_superusers_only(scene: Scene):
    url = reverse("admin:accounts_instancemembership_changelist")

    assert admin_client(scene, "operator").get(url).status_code == 403
    assert admin_client(scene, "admin").get(url).status_code == 200
    assert AuditEvent.objects.exists()


def test_the_tag_list_offers_sign_only_on_the_rows_the_user_may_sign(scene: Scene):
    from django.utils import timezone

    from registry.models import Manifest, Repository

    ext = scene.elsewhere.namespaces.get(name="ext")
    repository = Repository.objects.create(namespace=ext, name="ext/tool")
    now = timezone.now()
    manifest = Manifest.objects.create(
        repository=repository,
        digest="sha256:" + "e" * 64,
        media_type="application/vnd.oci.image.manifest.v1+json",
        pushed_at=now,
    )
    ext_tag = Tag.objects.create(
        repository=repository, name="v9", manifest=manifest, pushed_at=now, updated_at=now
    )
    user = make_user("mixed", is_staff=True)
    grant(user, scene.prod, role=Role.READER)
    grant(user, scene.elsewhere, role=Role.OPERATOR)
    client = Client()
    client.force_login(user)

    response = client.get(reverse("admin:registry_tag_changelist"))

    assert response.status_code == 200
    page = response.content.decode()
    sign_urls = {
        reverse("admin:registry_tag_sign", args=[tag.pk]) for tag in (scene.v1, scene.v2, ext_tag)
    }
    offered = {url for url in sign_urls if f'formaction="{url}"' in page}
    assert offered == {reverse("admin:registry_tag_sign", args=[ext_tag.pk])}
    assert page.count(">read-only<") == 2  # prod's v1 and v2: this user only reads prod
    operator_page = (
        admin_client(scene, "operator")
        .get(reverse("admin:registry_tag_changelist"))
        .content.decode()
    )
    assert f'formaction="{reverse("admin:registry_tag_sign", args=[scene.v2.pk])}"' in (
        operator_page
    )
    reader_page = (
        admin_client(scene, "reader").get(reverse("admin:registry_tag_changelist")).content.decode()
    )
    assert "column-operation" in operator_page
    assert 'class="button sign-button"' in operator_page
    assert 'class="button sign-button"' not in reader_page
    assert "column-operation" not in reader_page


def test_the_policy_page_offers_re_sign_only_to_operators_of_its_namespace(scene: Scene):
    user = make_user("mixed", is_staff=True)
    grant(user, scene.prod, role=Role.READER)
    grant(user, scene.elsewhere, role=Role.OPERATOR)
    client = Client()
    client.force_login(user)
    # v1 signed with another key than the policy's: a re-sign candidate.
    Signature.objects.filter(pk=scene.signed.pk).update(key_id=scene.spare.key_id)
    url = reverse("admin:signing_signingpolicy_change", args=[scene.policy.pk])

    mixed = client.get(url)
    operator = admin_client(scene, "operator").get(url)

    assert mixed.status_code == 200 and operator.status_code == 200
    assert mixed.context["can_sign"] is False
    assert operator.context["can_sign"] is True
    resign = reverse("admin:signing_signingpolicy_resign", args=[scene.policy.pk])
    assert resign in operator.content.decode()
    assert resign not in mixed.content.decode()
