"""The admin's permission matrix: every admin page and every admin action, every persona.

Generated from the admin site itself: every named URL of ``admin.site`` (each model
admin's changelist, add, change, delete and history pages and its own extra views, and
the site's pages) and every action each model admin has (``_get_base_actions``: its own
plus the site-wide ``delete_selected``) must have a row in ``PAGES`` / ``ACTIONS``, so a
new admin page or action cannot be added without deciding who may use it. The personas
are those of the API matrix (``test_matrix``): anon, nogrant, other (reader of another
instance), reader and operator of ``prod``, admin (superuser), outsider (operator of
another instance: every permission, none of it on prod).

Outcomes (one per persona):

- an HTTP status (200, 403, 405): exactly that, and the database unchanged; a 403 for an
  object must also be what a missing object gets (ids cannot be probed);
- ``LOGIN``: sent to the login page, database unchanged;
- ``HIDDEN``: answered exactly as for an object that does not exist (same status and
  redirect), database unchanged: the object's existence does not leak;
- ``DONE``: the write happened (status 200 or 302, the database changed);
- ``REFUSED``: an action this user does not have, or on objects it cannot see: back to
  the list, database unchanged, no message about the selected object;
- ``SHOWN``: a read-only action answered about the selected object (in a message).

Changelists of scoped models must show prod's rows to prod's members and none of them
to the members of the other instance.

Each persona's request runs in a savepoint rolled back afterwards, so all see the same data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypedDict

import pytest
from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.contrib.messages import get_messages
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, reverse
from django.utils import timezone

from accounts.models import InstanceMembership
from apitokens.models import ApiToken
from audit.models import AuditEvent
from kms.models import ServiceAuthorization
from registry.models import Instance, RegistryEvent
from signing.models import OperationKind, Signature, SignatureStatus, SigningOperation, Trigger
from tests.accounts.conftest import Scene, snapshot

pytestmark = [pytest.mark.django_db, pytest.mark.registry_server]

PERSONAS = ["anon", "nogrant", "other", "reader", "operator", "admin", "outsider"]
OUTSIDERS = ("other", "outsider")  # members of elsewhere only
INSIDERS = ("reader", "operator", "admin")
LOGIN, HIDDEN, DONE, REFUSED, SHOWN = "login", "hidden", "done", "refused", "shown"
Outcome = int | str
Outcomes = tuple[Outcome, Outcome, Outcome, Outcome, Outcome, Outcome, Outcome]


def _o(
    anon: Outcome,
    nogrant: Outcome,
    other: Outcome,
    reader: Outcome,
    operator: Outcome,
    admin_: Outcome,
    outsider: Outcome | None = None,
) -> Outcomes:
    """``outsider`` (an operator of elsewhere) answers like ``other`` unless told."""
    return (anon, nogrant, other, reader, operator, admin_, other if outsider is None else outsider)


# Shapes that recur.
SUPERUSER = lambda ok: _o(LOGIN, 403, 403, 403, 403, ok)  # noqa: E731
NOBODY = lambda refused: _o(LOGIN, 403, 403, 403, 403, refused)  # noqa: E731
SCOPED_LIST = _o(LOGIN, 403, 200, 200, 200, 200)  # "other" gets its own (empty) rows
SCOPED_PAGE = _o(LOGIN, 403, HIDDEN, 200, 200, 200)  # a prod object, hidden from "other"
KEY_PAGE = _o(LOGIN, 403, 200, 200, 200, 200)  # KMS public parts: every role reads them
OPERATE = lambda ok: _o(LOGIN, 403, HIDDEN, 403, ok, ok)  # noqa: E731
OPERATE_ACTION = _o(LOGIN, 403, REFUSED, REFUSED, DONE, DONE)
SUPERUSER_ACTION = _o(LOGIN, 403, 403, 403, 403, DONE)  # models sub-accounts cannot see
SUPERUSER_ACTION_SEEN = _o(LOGIN, 403, REFUSED, REFUSED, REFUSED, DONE)  # ... but can see


@dataclass
class Case:
    method: str
    url: Callable[[Scene], str]
    outcomes: Outcomes
    body: Callable[[Scene], dict[str, Any]] | None = None
    # For HIDDEN: the same request for an object that does not exist.
    missing_url: Callable[[Scene], str] | None = None
    # A changelist of a scoped model: prod's rows for insiders only.
    scoped_list: bool = False


# --- the admin's pages and actions, from the admin site ---------------------------------------


def _walk(patterns: list[Any]):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns)
        elif isinstance(pattern, URLPattern) and pattern.name:
            yield pattern.name


def admin_pages() -> set[str]:
    """Every named URL of the admin site (``admin:<name>``)."""
    return set(_walk(admin.site.get_urls()))


def admin_actions() -> set[str]:
    """``<app>_<model>:<action>`` for every action of every registered model admin."""
    return {
        f"{model._meta.app_label}_{model._meta.model_name}:{name}"
        for model, model_admin in admin.site._registry.items()
        # A private ModelAdmin method (the actions before permission filtering), so
        # django-stubs does not declare it.
        for _func, name, _description in model_admin._get_base_actions()  # type: ignore[attr-defined]
    }


# --- building rows ----------------------------------------------------------------------------

MISSING_ID = "999999999"
MISSING_UUID = "00000000-0000-4000-8000-000000000000"


def _page(
    name: str, obj: Callable[[Scene], Any] | None = None, missing: str = MISSING_ID
) -> tuple[Callable[[Scene], str], Callable[[Scene], str]]:
    if obj is None:
        return (lambda sc: reverse(f"admin:{name}")), (lambda sc: reverse(f"admin:{name}"))
    return (
        lambda sc: reverse(f"admin:{name}", args=[obj(sc).pk]),
        lambda sc: reverse(f"admin:{name}", args=[missing]),
    )


def get(
    name: str,
    outcomes: Outcomes,
    obj: Callable[[Scene], Any] | None = None,
    missing: str = MISSING_ID,
) -> Case:
    url, missing_url = _page(name, obj, missing)
    return Case("GET", url, outcomes, missing_url=missing_url)


def post(
    name: str,
    outcomes: Outcomes,
    body: Callable[[Scene], dict[str, Any]],
    obj: Callable[[Scene], Any] | None = None,
    missing: str = MISSING_ID,
) -> Case:
    url, missing_url = _page(name, obj, missing)
    return Case("POST", url, outcomes, body=body, missing_url=missing_url)


def _nothing(sc: Scene) -> dict[str, Any]:
    return {}


def _confirm(sc: Scene) -> dict[str, Any]:
    return {"post": "yes"}


class ModelOutcomes(TypedDict):
    """The outcomes of a model admin's five standard pages (see ``model_pages``)."""

    changelist: Outcomes
    add: tuple[Outcomes, Outcomes]
    change: tuple[Outcomes, Outcomes]
    delete: tuple[Outcomes, Outcomes]
    history: Outcomes


def model_pages(
    prefix: str,
    obj: Callable[[Scene], Any],
    *,
    changelist: Outcomes,
    add: tuple[Outcomes, Outcomes],
    change: tuple[Outcomes, Outcomes],
    delete: tuple[Outcomes, Outcomes],
    history: Outcomes,
    add_body: Callable[[Scene], dict[str, Any]] = lambda sc: {},
    change_body: Callable[[Scene], dict[str, Any]] = lambda sc: {},
    missing: str = MISSING_ID,
) -> dict[str, list[Case]]:
    """The five standard pages of a model admin: ``add``, ``change`` and ``delete`` are
    (GET outcomes, POST outcomes). A POST without a body is a form that does not
    validate: 200 and nothing written for those let in."""
    return {
        f"{prefix}_changelist": [
            Case(
                "GET",
                lambda sc: reverse(f"admin:{prefix}_changelist"),
                changelist,
                scoped_list=changelist is SCOPED_LIST,
            ),
        ],
        f"{prefix}_add": [
            get(f"{prefix}_add", add[0]),
            post(f"{prefix}_add", add[1], add_body),
        ],
        f"{prefix}_change": [
            get(f"{prefix}_change", change[0], obj, missing),
            post(f"{prefix}_change", change[1], change_body, obj, missing),
        ],
        f"{prefix}_delete": [
            get(f"{prefix}_delete", delete[0], obj, missing),
            post(f"{prefix}_delete", delete[1], _confirm, obj, missing),
        ],
        f"{prefix}_history": [get(f"{prefix}_history", history, obj, missing)],
    }


def action(
    prefix: str,
    name: str,
    outcomes: Outcomes,
    selected: Callable[[Scene], Any],
    extra: Callable[[Scene], dict[str, Any]] | None = None,
) -> Case:
    """POST the changelist's action form for the ``selected`` object (or primary key)."""

    def body(sc: Scene) -> dict[str, Any]:
        chosen = selected(sc)
        pk = chosen if isinstance(chosen, str) else chosen.pk
        return {"action": name, ACTION_CHECKBOX_NAME: [str(pk)], **(extra(sc) if extra else {})}

    url = lambda sc: reverse(f"admin:{prefix}_changelist")  # noqa: E731
    return Case("POST", url, outcomes, body=body, missing_url=url)


# --- objects the rows act on ------------------------------------------------------------------


def _group(sc: Scene) -> Group:
    return Group.objects.get(name="auditors")


def _reader(sc: Scene) -> Any:
    return sc.users["reader"]


def _token(sc: Scene) -> ApiToken:
    return ApiToken.objects.get(user=sc.users["reader"])  # its admin URLs use the digest


def _service_authorization(sc: Scene) -> ServiceAuthorization:
    return ServiceAuthorization.objects.get()


def _membership(sc: Scene) -> InstanceMembership:
    return InstanceMembership.objects.get(user=sc.users["reader"])


def _registry_event(sc: Scene) -> RegistryEvent:
    return RegistryEvent.objects.get(event_id="admin-matrix")


def _failed(sc: Scene) -> Signature:
    return Signature.objects.get(manifest=sc.v2.manifest)


def _operation(sc: Scene) -> SigningOperation:
    return SigningOperation.objects.get(namespace=sc.team)


def _app_list_url(app_label: str) -> Callable[[Scene], str]:
    return lambda sc: reverse("admin:app_list", args=[app_label])


def _content_type_id(app_label: str, model: str) -> int:
    return ContentType.objects.get(app_label=app_label, model=model).pk


# --- the matrix -------------------------------------------------------------------------------

EVERYONE_SIGNED_IN = _o(LOGIN, 200, 200, 200, 200, 200)
SUPERUSER_MODEL = ModelOutcomes(
    changelist=SUPERUSER(200),
    add=(SUPERUSER(200), SUPERUSER(DONE)),
    change=(SUPERUSER(200), SUPERUSER(DONE)),
    delete=(SUPERUSER(200), SUPERUSER(DONE)),
    history=SUPERUSER(200),
)
# Rows the registry writes (repositories, manifests, tags): sub-accounts read their scope,
# nobody adds, changes or deletes them in the admin.
REGISTRY_RECORD = ModelOutcomes(
    changelist=SCOPED_LIST,
    add=(NOBODY(403), NOBODY(403)),
    change=(SCOPED_PAGE, _o(LOGIN, 403, HIDDEN, 403, 403, 403)),
    delete=(NOBODY(403), NOBODY(403)),
    history=SCOPED_PAGE,
)

PAGES: dict[str, list[Case]] = {
    # The site.
    "index": [get("index", EVERYONE_SIGNED_IN)],
    "app_list": [
        Case("GET", _app_list_url(app), outcomes)
        for app, outcomes in [
            ("auth", _o(LOGIN, 404, 404, 404, 404, 200)),
            ("apitokens", _o(LOGIN, 404, 404, 404, 404, 200)),
            ("kms", _o(LOGIN, 404, 200, 200, 200, 200)),
            ("registry", _o(LOGIN, 404, 200, 200, 200, 200)),
            ("signing", _o(LOGIN, 404, 200, 200, 200, 200)),
            ("audit", _o(LOGIN, 404, 200, 200, 200, 200)),
            ("accounts", _o(LOGIN, 404, 404, 404, 404, 200)),
        ]
    ],
    "login": [get("login", _o(200, 302, 302, 302, 302, 302))],
    "logout": [post("logout", _o(302, 200, 200, 200, 200, 200), _nothing)],
    "password_change": [get("password_change", EVERYONE_SIGNED_IN)],
    "password_change_done": [get("password_change_done", EVERYONE_SIGNED_IN)],
    "jsi18n": [get("jsi18n", EVERYONE_SIGNED_IN)],
    # Lookups answer from the target's scoped queryset (see the autocomplete test below).
    "autocomplete": [
        Case(
            "GET",
            lambda sc: (
                reverse("admin:autocomplete") + "?app_label=signing&"
                "model_name=signingpolicy&field_name=namespace&term="
            ),
            SCOPED_LIST,
        ),
    ],
    # No model has a public page ("view on site"): nothing to redirect to.
    "view_on_site": [
        Case(
            "GET",
            lambda sc: reverse(
                "admin:view_on_site",
                args=[_content_type_id("signing", "signingpolicy"), sc.policy.pk],
            ),
            _o(LOGIN, 404, 404, 404, 404, 404),
        ),
    ],
    # Django's users, groups and API tokens: superusers only.
    **model_pages(
        "auth_group",
        _group,
        **SUPERUSER_MODEL,
        add_body=lambda sc: {"name": "new-group"},
        change_body=lambda sc: {"name": "renamed-group"},
    ),
    **model_pages(
        "auth_user",
        _reader,
        **(SUPERUSER_MODEL | {"change": (SUPERUSER(200), SUPERUSER(200))}),
        add_body=lambda sc: {
            "username": "new-user",
            "password1": "a-long-Passphrase-42",
            "password2": "a-long-Passphrase-42",
            "usable_password": "true",
        },
    ),
    "auth_user_password_change": [
        get("auth_user_password_change", SUPERUSER(200), _reader),
        post(
            "auth_user_password_change",
            SUPERUSER(DONE),
            lambda sc: {
                "password1": "another-long-Passphrase-7",
                "password2": "another-long-Passphrase-7",
                "usable_password": "true",
            },
            _reader,
        ),
    ],
    # API tokens: superusers see and revoke them (deleting revokes, audited); nobody adds
    # one here (a token is shown once, by the API or `manage.py create_api_token`) or
    # changes one.
    **model_pages(
        "apitokens_apitoken",
        _token,
        changelist=SUPERUSER(200),
        add=(NOBODY(403), NOBODY(403)),
        change=(SUPERUSER(200), NOBODY(403)),
        delete=(SUPERUSER(200), SUPERUSER(DONE)),
        history=SUPERUSER(200),
    ),
    # KMS: every role reads keys; managing them is a Django permission, not a role's. Keys
    # are never deleted from the admin (deletion is scheduled), authorizations are revoked.
    **model_pages(
        "kms_key",
        lambda sc: sc.key,
        changelist=KEY_PAGE,
        add=(SUPERUSER(200), SUPERUSER(DONE)),
        change=(KEY_PAGE, SUPERUSER(DONE)),
        delete=(NOBODY(403), NOBODY(403)),
        history=KEY_PAGE,
        add_body=lambda sc: {
            "alias": "from-admin",
            "description": "",
            "key_usage": "ASYMMETRIC_SIGN_VERIFY_RSA_2048",
            "region": sc.key.region,
        },
        change_body=lambda sc: {"description": "changed in the admin"},
        missing=MISSING_UUID,
    ),
    "kms_key_public_key_pem": [
        get("kms_key_public_key_pem", KEY_PAGE, lambda sc: sc.key, MISSING_UUID)
    ],
    **model_pages(
        "kms_serviceauthorization",
        _service_authorization,
        changelist=SUPERUSER(200),
        add=(SUPERUSER(200), SUPERUSER(200)),
        change=(SUPERUSER(200), NOBODY(403)),
        delete=(NOBODY(403), NOBODY(403)),
        history=SUPERUSER(200),
    ),
    # Registry: sub-accounts read their instances; administrators manage them. prod has
    # namespaces, so even an administrator cannot delete it (or team, which has images).
    **model_pages(
        "registry_instance",
        lambda sc: sc.prod,
        changelist=SCOPED_LIST,
        add=(SUPERUSER(200), SUPERUSER(200)),
        change=(SCOPED_PAGE, _o(LOGIN, 403, HIDDEN, 403, 403, 200)),
        delete=(SUPERUSER(200), SUPERUSER(200)),
        history=SCOPED_PAGE,
    ),
    "registry_instance_rotate_webhook_token": [
        get(
            "registry_instance_rotate_webhook_token",
            _o(LOGIN, 405, 405, 405, 405, 405),
            lambda sc: sc.prod,
        ),
        post(
            "registry_instance_rotate_webhook_token",
            _o(LOGIN, HIDDEN, HIDDEN, 403, 403, DONE),
            _nothing,
            lambda sc: sc.prod,
        ),
    ],
    **model_pages(
        "registry_namespace",
        lambda sc: sc.team,
        changelist=SCOPED_LIST,
        add=(SUPERUSER(200), SUPERUSER(DONE)),
        change=(SCOPED_PAGE, _o(LOGIN, 403, HIDDEN, 403, 403, DONE)),
        # team has a signing policy: the page says to delete the policy first (a link to
        # its delete page) and the POST deletes nothing; never a permission error.
        delete=(SUPERUSER(200), SUPERUSER(200)),
        history=SCOPED_PAGE,
        add_body=lambda sc: {"instance": sc.prod.pk, "name": "fresh", "description": ""},
        change_body=lambda sc: {"description": "changed in the admin"},
    ),
    **model_pages("registry_repository", lambda sc: sc.v1.repository, **REGISTRY_RECORD),
    **model_pages("registry_manifest", lambda sc: sc.v1.manifest, **REGISTRY_RECORD),
    **model_pages("registry_tag", lambda sc: sc.v1, **REGISTRY_RECORD),
    "registry_tag_sign": [
        # Opened directly: to the tag's page (with a message), nothing signed.
        get("registry_tag_sign", _o(LOGIN, 403, HIDDEN, 302, 302, 302), lambda sc: sc.v2),
        post("registry_tag_sign", OPERATE(DONE), _nothing, lambda sc: sc.v2),
    ],
    # Webhook deliveries are operations data: administrators only.
    **model_pages(
        "registry_registryevent",
        _registry_event,
        changelist=SUPERUSER(200),
        add=(NOBODY(403), NOBODY(403)),
        change=(SUPERUSER(200), NOBODY(403)),
        delete=(NOBODY(403), NOBODY(403)),
        history=SUPERUSER(200),
    ),
    # Signing: operators write policies and sign in their scope.
    **model_pages(
        "signing_signingpolicy",
        lambda sc: sc.policy,
        changelist=SCOPED_LIST,
        # The outsider may add policies (in elsewhere), not for prod's namespace.
        add=(_o(LOGIN, 403, 403, 403, 200, 200, 200), _o(LOGIN, 403, 403, 403, DONE, DONE, 200)),
        change=(SCOPED_PAGE, OPERATE(DONE)),
        delete=(OPERATE(200), OPERATE(DONE)),
        history=SCOPED_PAGE,
        add_body=lambda sc: {
            "namespace": sc.other_ns.pk,
            "name": "other-policy",
            "key": str(sc.key.key_id),
            "domain": "",
            "disabled": "",
        },
        change_body=lambda sc: {
            "name": "renamed",
            "key": str(sc.key.key_id),
            "domain": sc.domain,
            "disabled": "on",
        },
    ),
    "signing_signingpolicy_resign": [
        get("signing_signingpolicy_resign", OPERATE(200), lambda sc: sc.policy),
        post("signing_signingpolicy_resign", OPERATE(DONE), _nothing, lambda sc: sc.policy),
    ],
    "signing_signingpolicy_retry_failed": [
        get(
            "signing_signingpolicy_retry_failed",
            _o(LOGIN, 405, 405, 405, 405, 405),
            lambda sc: sc.policy,
        ),
        post("signing_signingpolicy_retry_failed", OPERATE(DONE), _nothing, lambda sc: sc.policy),
    ],
    "signing_signingpolicy_sign_existing": [
        get(
            "signing_signingpolicy_sign_existing",
            _o(LOGIN, 405, 405, 405, 405, 405),
            lambda sc: sc.policy,
        ),
        # Every image of team has a signature row here: "nothing to sign", back to the page.
        post("signing_signingpolicy_sign_existing", OPERATE(302), _nothing, lambda sc: sc.policy),
    ],
    # Operations (issue 12) are read like signatures; nobody adds, changes or deletes them.
    **model_pages(
        "signing_signingoperation",
        _operation,
        changelist=SCOPED_LIST,
        add=(NOBODY(403), NOBODY(403)),
        change=(_o(LOGIN, 403, HIDDEN, 302, 302, 302), _o(LOGIN, 403, HIDDEN, 405, 405, 405)),
        delete=(NOBODY(403), NOBODY(403)),
        history=SCOPED_PAGE,
    ),
    "signing_signingoperation_progress": [
        get("signing_signingoperation_progress", SCOPED_PAGE, _operation)
    ],
    "signing_signingoperation_progress_json": [
        get("signing_signingoperation_progress_json", SCOPED_PAGE, _operation)
    ],
    # Signatures and the audit log are written by Signet only.
    **model_pages("signing_signature", lambda sc: sc.signed, **REGISTRY_RECORD),
    **model_pages("audit_auditevent", lambda sc: sc.event, **REGISTRY_RECORD),
    # Memberships: superusers grant them.
    **model_pages(
        "accounts_instancemembership",
        _membership,
        **(SUPERUSER_MODEL | {"change": (SUPERUSER(200), SUPERUSER(200))}),
        add_body=lambda sc: {
            "user": sc.users["nogrant"].pk,
            "instance": sc.prod.pk,
            "role": "reader",
            "all_namespaces": "on",
        },
    ),
}

NO_ONE = _o(LOGIN, 403, REFUSED, REFUSED, REFUSED, REFUSED)  # an action nobody has
SUPERUSER_REFUSED = _o(LOGIN, 403, 403, 403, 403, REFUSED)  # ... on a superuser-only model

ACTIONS: dict[str, Case] = {
    "auth_group:delete_selected": action(
        "auth_group", "delete_selected", SUPERUSER_ACTION, _group, _confirm
    ),
    "auth_user:delete_selected": action(
        "auth_user", "delete_selected", SUPERUSER_ACTION, _reader, _confirm
    ),
    "apitokens_apitoken:delete_selected": action(
        "apitokens_apitoken", "delete_selected", SUPERUSER_ACTION, _token, _confirm
    ),
    "kms_key:enable_keys": action(
        "kms_key", "enable_keys", SUPERUSER_ACTION_SEEN, lambda sc: sc.retired
    ),
    "kms_key:disable_keys": action(
        "kms_key", "disable_keys", SUPERUSER_ACTION_SEEN, lambda sc: sc.spare
    ),
    "kms_key:schedule_deletion": action(
        "kms_key",
        "schedule_deletion",
        SUPERUSER_ACTION_SEEN,
        lambda sc: sc.retired,
        lambda sc: {"pending_window_in_days": "7", "apply": "Schedule deletion"},
    ),
    "kms_key:cancel_deletion": action(
        "kms_key", "cancel_deletion", SUPERUSER_ACTION_SEEN, lambda sc: sc.pending
    ),
    "kms_key:delete_selected": action(
        "kms_key", "delete_selected", NO_ONE, lambda sc: sc.spare, _confirm
    ),
    "kms_serviceauthorization:revoke": action(
        "kms_serviceauthorization",
        "revoke",
        SUPERUSER_ACTION,
        _service_authorization,
        lambda sc: {"confirmed": "yes"},  # what its confirmation page posts
    ),
    "kms_serviceauthorization:delete_selected": action(
        "kms_serviceauthorization",
        "delete_selected",
        SUPERUSER_REFUSED,
        _service_authorization,
        _confirm,
    ),
    "registry_instance:rotate_webhook_token_action": action(
        "registry_instance",
        "rotate_webhook_token_action",
        SUPERUSER_ACTION_SEEN,
        lambda sc: sc.prod,
    ),
    "registry_instance:delete_selected": action(
        "registry_instance", "delete_selected", SUPERUSER_ACTION_SEEN, lambda sc: sc.bare, _confirm
    ),
    "registry_namespace:delete_selected": action(
        "registry_namespace",
        "delete_selected",
        SUPERUSER_ACTION_SEEN,
        lambda sc: sc.other_ns,
        _confirm,
    ),
    "registry_repository:delete_selected": action(
        "registry_repository", "delete_selected", NO_ONE, lambda sc: sc.v1.repository, _confirm
    ),
    "registry_manifest:delete_selected": action(
        "registry_manifest", "delete_selected", NO_ONE, lambda sc: sc.v2.manifest, _confirm
    ),
    "registry_tag:sign_selected": action(
        "registry_tag", "sign_selected", OPERATE_ACTION, lambda sc: sc.v2
    ),
    # Verifying reads the registry and writes nothing: the answer is in the messages.
    "registry_tag:verify_selected": action(
        "registry_tag",
        "verify_selected",
        _o(LOGIN, 403, REFUSED, SHOWN, SHOWN, SHOWN),
        lambda sc: sc.v1,
    ),
    "registry_tag:delete_selected": action(
        "registry_tag", "delete_selected", NO_ONE, lambda sc: sc.v2, _confirm
    ),
    "registry_registryevent:delete_selected": action(
        "registry_registryevent", "delete_selected", SUPERUSER_REFUSED, _registry_event, _confirm
    ),
    "signing_signingpolicy:delete_selected": action(
        "signing_signingpolicy", "delete_selected", OPERATE_ACTION, lambda sc: sc.policy, _confirm
    ),
    "signing_signingpolicy:resign_selected": action(
        "signing_signingpolicy", "resign_selected", OPERATE_ACTION, lambda sc: sc.policy
    ),
    "signing_signingpolicy:retry_failed_selected": action(
        "signing_signingpolicy", "retry_failed_selected", OPERATE_ACTION, lambda sc: sc.policy
    ),
    "signing_signature:retry_selected": action(
        "signing_signature", "retry_selected", OPERATE_ACTION, _failed
    ),
    "signing_signingoperation:delete_selected": action(
        "signing_signingoperation", "delete_selected", NO_ONE, _operation, _confirm
    ),
    "signing_signature:delete_selected": action(
        "signing_signature", "delete_selected", NO_ONE, lambda sc: sc.signed, _confirm
    ),
    "audit_auditevent:delete_selected": action(
        "audit_auditevent", "delete_selected", NO_ONE, lambda sc: sc.event, _confirm
    ),
    "accounts_instancemembership:delete_selected": action(
        "accounts_instancemembership", "delete_selected", SUPERUSER_ACTION, _membership, _confirm
    ),
}


# --- the tests ----------------------------------------------------------------------------------


def test_every_admin_page_and_action_has_a_row():
    missing_pages = sorted(admin_pages() - set(PAGES))
    missing_actions = sorted(admin_actions() - set(ACTIONS))
    stale = sorted((set(PAGES) - admin_pages()) | (set(ACTIONS) - admin_actions()))

    assert not missing_pages, f"admin pages without a row in the matrix: {missing_pages}"
    assert not missing_actions, f"admin actions without a row in the matrix: {missing_actions}"
    assert not stale, f"matrix rows for admin pages or actions that no longer exist: {stale}"


@pytest.fixture
def admin_scene(scene: Scene) -> Scene:
    """The access-control scene plus the objects only the admin matrix acts on."""
    Group.objects.create(name="auditors")
    RegistryEvent.objects.create(
        instance=scene.prod,
        event_id="admin-matrix",
        action="push",
        repository="team/app",
        tag="v1",
        status="processed",
        occurred_at=timezone.now(),
    )
    # v2's signing failed once (something to retry), and v1 was signed with another key
    # than the policy's (something to re-sign).
    Signature.objects.create(
        policy=scene.policy,
        manifest=scene.v2.manifest,
        status=SignatureStatus.FAILED,
        failure_code="InternalError",
        failure_reason="the registry was down",
        attempts=1,
        trigger=Trigger.PUSH,
    )
    Signature.objects.filter(pk=scene.signed.pk).update(key_id=scene.spare.key_id)
    now = timezone.now()
    SigningOperation.objects.create(
        kind=OperationKind.SIGN,
        instance=scene.prod,
        namespace=scene.team,
        namespace_name="team",
        created_at=now,
        finished_at=now,  # finished: reading its pages writes nothing
    )
    return scene


def admin_snapshot() -> dict[str, Any]:
    state = snapshot()
    state["admin.LogEntry"] = list(LogEntry.objects.order_by("pk").values())
    state["auth.Group"] = list(Group.objects.order_by("pk").values())
    state["registry.RegistryEvent"] = list(RegistryEvent.objects.order_by("pk").values())
    return state


def _client(scene: Scene, persona: str) -> Client:
    client = Client()
    user = scene.users[persona]
    if user is not None:
        client.force_login(user)
    return client


def _send(client: Client, case: Case, url: str, scene: Scene):
    body = case.body(scene) if case.body else None
    if case.method == "GET":
        return client.get(url)
    return client.post(url, body or {})


def _messages(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def _instance_of(row: Any) -> str:
    """The registry instance a changelist row belongs to."""
    if isinstance(row, AuditEvent):
        return row.instance_name
    if isinstance(row, Instance):
        return row.name
    for path in (
        "instance",
        "namespace.instance",
        "repository.namespace.instance",
        "policy.namespace.instance",
    ):
        obj = row
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            continue
        return obj.name
    raise AssertionError(f"no instance for {row!r}")


def _list_problem(persona: str, response) -> str | None:
    """A scoped changelist: prod's rows for insiders (only those for prod's members),
    none of them for outsiders."""
    if response.context is None or "cl" not in response.context:
        return None  # not a changelist (the autocomplete row: see its own test)
    instances = {_instance_of(row) for row in response.context["cl"].result_list}
    if persona in OUTSIDERS and "prod" in instances:
        return "the list shows prod's rows"
    if persona in INSIDERS and "prod" not in instances:
        return "the list misses prod's rows"
    if persona in ("reader", "operator") and instances != {"prod"}:
        return f"the list shows rows of {sorted(instances - {'prod'})}"
    return None


def _check(outcome: Outcome, response, changed: bool, missing, url: str) -> str | None:
    status, location = response.status_code, response.get("Location", "")
    if outcome == DONE:
        if status in (200, 302) and changed:
            return None
        return f"expected the write to happen, got {status} {location} changed={changed}"
    if changed:
        return f"refused ({outcome}) but the database changed ({status} {location})"
    if outcome == LOGIN:
        ok = status == 302 and location.startswith(reverse("admin:login"))
    elif outcome == HIDDEN:
        ok = (status, location) == (missing.status_code, missing.get("Location", "")) and (
            status in (302, 403, 404)
        )
    elif outcome == REFUSED:
        # "No action selected" (or nothing selected that this user can see): back to the
        # list, or the list itself when the user has no action at all; never an action's
        # confirmation page, never a word about the selected object.
        ok = (status == 302 and location == url) or (
            status == 200
            and response.context is not None
            and "cl" in response.context
            and "action_form" in response.context
        )
        ok = ok and not any("team/app" in text or "prod" in text for text in _messages(response))
    elif outcome == SHOWN:
        ok = status == 302 and any("team/app:v1" in text for text in _messages(response))
    else:
        ok = status == outcome
        if ok and status == 403 and missing is not None:
            ok = missing.status_code == 403  # ids cannot be probed
    if ok:
        return None
    missing_status = missing.status_code if missing is not None else "-"
    return (
        f"expected {outcome}, got {status} {location} (missing object: {missing_status}) "
        f"{response.content[:160]!r}"
    )


CASES = [
    pytest.param(name, index, id=f"{name}-{case.method}-{index}")
    for name, cases in PAGES.items()
    for index, case in enumerate(cases)
] + [pytest.param(name, None, id=f"action-{name}") for name in ACTIONS]


@pytest.mark.parametrize(("name", "index"), CASES)
def test_the_admin_matrix(admin_scene: Scene, name: str, index: int | None):
    case = ACTIONS[name] if index is None else PAGES[name][index]
    url = case.url(admin_scene)
    missing_url = case.missing_url(admin_scene) if case.missing_url else url
    failures = []
    for persona, outcome in zip(PERSONAS, case.outcomes, strict=True):
        client = _client(admin_scene, persona)
        before = admin_snapshot()
        with transaction.atomic():
            missing = None
            # Those who cannot see the object must not tell it from a missing one.
            if outcome == HIDDEN or (
                outcome == 403 and missing_url != url and persona in ("nogrant", *OUTSIDERS)
            ):
                with transaction.atomic():
                    missing = _send(client, case, missing_url, admin_scene)
                    transaction.set_rollback(True)
            response = _send(client, case, url, admin_scene)
            changed = admin_snapshot() != before
            transaction.set_rollback(True)
        problem = _check(outcome, response, changed, missing, url)
        if problem is None and outcome == 200 and case.scoped_list:
            problem = _list_problem(persona, response)
        if problem:
            failures.append(f"{persona}: {problem}")
    assert not failures, f"{case.method} {url}:\n" + "\n".join(failures)


def test_admin_autocomplete_offers_only_the_users_scope(admin_scene: Scene):
    url = reverse("admin:autocomplete")
    query = {
        "app_label": "signing",
        "model_name": "signingpolicy",
        "field_name": "namespace",
        "term": "",
    }

    def offered(persona: str) -> set[str]:
        response = _client(admin_scene, persona).get(url, query)
        assert response.status_code == 200, persona
        return {row["text"] for row in response.json()["results"]}

    assert offered("other") == offered("outsider") == {"ext"}
    assert offered("reader") == offered("operator") == {"team", "other"}
    assert offered("admin") == {"team", "other", "ext"}
