"""The permission matrix: every API endpoint, every persona, status code and database.

The list of endpoints is generated from the URL conf (``django.urls.get_resolver()``):
every route under ``/api/`` must have a row in ``MATRIX`` (route name -> one case per
HTTP method the route serves), so a new endpoint cannot be added without deciding who
may use it. Personas:

- ``anon``: no credentials;
- ``nogrant``: a signed-in user with no permission and no membership;
- ``other``: a reader of ANOTHER instance (``elsewhere``);
- ``outsider``: an operator of ``elsewhere`` (it holds every write permission, just not
  on prod: its writes to prod's objects must answer 404, as for missing ones);
- ``reader``: a reader of ``prod``; ``operator``: an operator of ``prod``;
- ``admin``: a superuser.

Each persona's request runs in a savepoint rolled back afterwards, so all personas see
the same data; a refused request (4xx) must leave the database exactly as it was, and a
list must show prod's objects to prod's members and never to the other instance's.
Everything is real: a docker-registry on loopback, the local KMS, token authentication.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.db import transaction
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from kms import crypto
from kms.models import AuthorizedService
from kms.services import operations
from signing.models import OperationKind, SigningOperation
from tests.accounts.conftest import Scene, client_for, snapshot

pytestmark = [pytest.mark.django_db, pytest.mark.registry_server]

PERSONAS = ["anon", "nogrant", "other", "reader", "operator", "admin", "outsider"]
OUTSIDERS = ("other", "outsider")  # members of elsewhere only
INSIDERS = ("reader", "operator", "admin")


# --- the routes, from the URL conf ---------------------------------------------------------


def _walk(patterns: list[Any], prefix: str = ""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern), pattern


def _methods(pattern: URLPattern) -> set[str] | None:
    """The HTTP methods a route serves (None for a plain function view)."""
    callback = pattern.callback
    actions = getattr(callback, "actions", None)
    if actions is not None:
        # DRF adds "head" (GET's twin) to a viewset's shared ``actions`` at its first
        # request, so it depends on which tests ran before: left out like below.
        return {method.upper() for method in actions if method != "head"}
    view_class = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
    if view_class is None:
        return None
    return {
        method.upper()
        for method in view_class.http_method_names
        if method not in ("options", "head") and hasattr(view_class, method)
    }


def api_routes() -> dict[str, set[str] | None]:
    routes: dict[str, set[str] | None] = {}
    for route, pattern in _walk(get_resolver().url_patterns):
        route = route.lstrip("^")
        if route.startswith("api/"):
            assert pattern.name, f"API route {route} has no name"
            routes[pattern.name] = _methods(pattern)
    return routes


# --- the matrix -------------------------------------------------------------------------------

# Expected status per persona, in PERSONAS order.
Statuses = tuple[int, int, int, int, int, int, int]


def _s(
    anon: int,
    nogrant: int,
    other: int,
    reader: int,
    operator: int,
    admin: int,
    outsider: int | None = None,
) -> Statuses:
    """``outsider`` (an operator of elsewhere) answers like ``other`` unless told."""
    return (anon, nogrant, other, reader, operator, admin, other if outsider is None else outsider)


# Shapes that recur.
LIST = _s(401, 403, 200, 200, 200, 200)  # a scoped list: "other" gets an empty page
DETAIL = _s(401, 403, 404, 200, 200, 200)  # an object of prod: hidden from "other"
KEY_READ = _s(401, 403, 200, 200, 200, 200)  # KMS public parts: any role may read
ADMIN_ONLY = lambda ok: _s(401, 403, 403, 403, 403, ok)  # noqa: E731
# Writes on prod's objects: the outsider may write, but not there: 404.
OPERATE = lambda ok: _s(401, 403, 403, 403, ok, ok, 404)  # noqa: E731


@dataclass
class Case:
    method: str
    url: Callable[[Scene], str]
    statuses: Statuses
    body: Callable[[Scene], Any] | None = None
    # A scoped list: prod's rows (they hold ``marker``) for insiders, never for outsiders.
    scoped_list: bool = False
    marker: bytes = b'"prod"'


def listing(path: str, marker: bytes = b'"prod"') -> Case:
    return Case("GET", lambda sc: path, LIST, scoped_list=True, marker=marker)


def _operation(sc: Scene) -> SigningOperation:
    """A finished bulk sign in prod's team (reading it writes nothing)."""
    now = timezone.now()
    operation, _ = SigningOperation.objects.get_or_create(
        kind=OperationKind.SIGN,
        instance=sc.prod,
        namespace=sc.team,
        defaults={"namespace_name": "team", "created_at": now, "finished_at": now},
    )
    return operation


def _operations(sc: Scene) -> str:
    """The operation list, with ``_operation`` in it."""
    _operation(sc)
    return f"{SIG}/operations/"


KMS = "/api/v1/kms"
REG = "/api/v1/registry"
SIG = "/api/v1/signing"


def _key(suffix: str = "", which: str = "key") -> Callable[[Scene], str]:
    return lambda sc: f"{KMS}/keys/{getattr(sc, which).key_id}/{suffix}"


def _empty(sc: Scene) -> dict[str, Any]:
    return {}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _kms_signature(sc: Scene) -> str:
    return _b64(
        operations.sign(
            key_id=str(sc.key.key_id), message=b"hello", algorithm=crypto.RSA_PKCS1_SHA_256
        )
    )


MATRIX: dict[str, list[Case]] = {
    # KMS: reading keys is every role's; managing them is a plain Django permission.
    "kms-key-list": [
        Case("GET", lambda sc: f"{KMS}/keys/", KEY_READ),
        Case("POST", lambda sc: f"{KMS}/keys/", ADMIN_ONLY(201), lambda sc: {"alias": "new"}),
    ],
    "kms-key-detail": [
        Case("GET", _key(), KEY_READ),
        Case("PATCH", _key(), ADMIN_ONLY(200), lambda sc: {"description": "changed"}),
    ],
    "kms-key-public-key": [Case("GET", _key("public-key/"), KEY_READ)],
    "kms-key-disable": [Case("POST", _key("disable/", "spare"), ADMIN_ONLY(200), _empty)],
    "kms-key-enable": [Case("POST", _key("enable/", "spare"), ADMIN_ONLY(200), _empty)],
    "kms-key-schedule-deletion": [
        Case(
            "POST",
            _key("schedule-deletion/", "retired"),
            ADMIN_ONLY(200),
            lambda sc: {"pending_window_in_days": 7},
        ),
    ],
    "kms-key-cancel-deletion": [
        Case("POST", _key("cancel-deletion/", "pending"), ADMIN_ONLY(200), _empty),
    ],
    "kms-key-sign": [
        Case(
            "POST",
            _key("sign/"),
            ADMIN_ONLY(200),
            lambda sc: {"message": _b64(b"hello"), "algorithm": crypto.RSA_PKCS1_SHA_256},
        ),
    ],
    "kms-key-verify": [
        Case(
            "POST",
            _key("verify/"),
            ADMIN_ONLY(200),
            lambda sc: {
                "message": _b64(b"hello"),
                "signature": _kms_signature(sc),
                "algorithm": crypto.RSA_PKCS1_SHA_256,
            },
        ),
    ],
    "kms-service-authorization-list": [
        Case("GET", lambda sc: f"{KMS}/service-authorizations/", ADMIN_ONLY(200)),
        # Already granted: the administrator's grant answers that it exists.
        Case(
            "POST",
            lambda sc: f"{KMS}/service-authorizations/",
            ADMIN_ONLY(200),
            lambda sc: {"service": AuthorizedService.REGISTRY_SIGNING},
        ),
    ],
    "kms-service-authorization-revoke": [
        Case(
            "POST",
            lambda sc: f"{KMS}/service-authorizations/revoke/",
            ADMIN_ONLY(200),
            lambda sc: {"service": AuthorizedService.REGISTRY_SIGNING},
        ),
    ],
    # Registry: instances and namespaces are managed by administrators, read by roles.
    "registry-instance-list": [
        listing(f"{REG}/instances/"),
        Case(
            "POST",
            lambda sc: f"{REG}/instances/",
            ADMIN_ONLY(201),
            lambda sc: {
                "name": "new",
                "backend_url": "http://127.0.0.1:9",
                "default_domain": "new.example.com",
            },
        ),
    ],
    "registry-instance-detail": [
        Case("GET", lambda sc: f"{REG}/instances/{sc.prod.pk}/", DETAIL),
        Case(
            "PUT",
            lambda sc: f"{REG}/instances/{sc.prod.pk}/",
            ADMIN_ONLY(200),
            lambda sc: {"description": "changed"},
        ),
        Case(
            "PATCH",
            lambda sc: f"{REG}/instances/{sc.prod.pk}/",
            ADMIN_ONLY(200),
            lambda sc: {"description": "changed"},
        ),
        # An instance without namespaces (prod's would refuse with 409 for everyone).
        Case("DELETE", lambda sc: f"{REG}/instances/{sc.bare.pk}/", ADMIN_ONLY(204)),
    ],
    "registry-instance-rotate-webhook-token": [
        Case(
            "POST",
            lambda sc: f"{REG}/instances/{sc.prod.pk}/rotate-webhook-token/",
            ADMIN_ONLY(200),
            _empty,
        ),
    ],
    "registry-namespace-list": [
        listing(f"{REG}/namespaces/"),
        Case(
            "POST",
            lambda sc: f"{REG}/namespaces/",
            ADMIN_ONLY(201),
            lambda sc: {"instance": sc.prod.pk, "name": "fresh"},
        ),
    ],
    "registry-namespace-detail": [
        Case("GET", lambda sc: f"{REG}/namespaces/{sc.team.pk}/", DETAIL),
        Case(
            "PUT",
            lambda sc: f"{REG}/namespaces/{sc.team.pk}/",
            ADMIN_ONLY(200),
            lambda sc: {"description": "changed"},
        ),
        Case(
            "PATCH",
            lambda sc: f"{REG}/namespaces/{sc.team.pk}/",
            ADMIN_ONLY(200),
            lambda sc: {"description": "changed"},
        ),
        Case("DELETE", lambda sc: f"{REG}/namespaces/{sc.team.pk}/", ADMIN_ONLY(204)),
    ],
    "registry-repository-list": [listing(f"{REG}/repositories/")],
    "registry-repository-detail": [
        Case("GET", lambda sc: f"{REG}/repositories/{sc.v1.repository_id}/", DETAIL),
    ],
    "registry-tag-list": [listing(f"{REG}/tags/")],
    "registry-tag-detail": [Case("GET", lambda sc: f"{REG}/tags/{sc.v1.pk}/", DETAIL)],
    "registry-manifest-list": [listing(f"{REG}/manifests/", b'"team/app"')],
    "registry-manifest-detail": [
        Case("GET", lambda sc: f"{REG}/manifests/{sc.v1.manifest_id}/", DETAIL),
    ],
    "registry-tag-sign": [
        Case("POST", lambda sc: f"{REG}/tags/{sc.v2.pk}/sign/", OPERATE(200), _empty),
    ],
    # The registry's own endpoint: its instance token only, never a user's credentials.
    "registry-webhook": [
        Case(
            "POST",
            lambda sc: f"{REG}/instances/prod/events/",
            _s(401, 401, 401, 401, 401, 401),
            lambda sc: {"events": []},
        ),
    ],
    # Signing.
    "signing-policy-list": [
        listing(f"{SIG}/policies/"),
        # The outsider names an instance it cannot see: a field error, as for a typo.
        Case(
            "POST",
            lambda sc: f"{SIG}/policies/",
            _s(401, 403, 403, 403, 201, 201, 400),
            lambda sc: {
                "instance": "prod",
                "namespace": "other",
                "name": "other-policy",
                "key": str(sc.key.key_id),
            },
        ),
    ],
    "signing-policy-detail": [
        Case("GET", lambda sc: f"{SIG}/policies/{sc.policy.pk}/", DETAIL),
        Case(
            "PUT",
            lambda sc: f"{SIG}/policies/{sc.policy.pk}/",
            OPERATE(200),
            lambda sc: {"disabled": True},
        ),
        Case(
            "PATCH",
            lambda sc: f"{SIG}/policies/{sc.policy.pk}/",
            OPERATE(200),
            lambda sc: {"disabled": True},
        ),
        Case("DELETE", lambda sc: f"{SIG}/policies/{sc.policy.pk}/", OPERATE(200)),
    ],
    "signing-policy-delete-preview": [
        Case("GET", lambda sc: f"{SIG}/policies/{sc.policy.pk}/delete-preview/", DETAIL),
    ],
    "signing-policy-resign": [
        Case("POST", lambda sc: f"{SIG}/policies/{sc.policy.pk}/resign/", OPERATE(200), _empty),
    ],
    "signing-policy-retry": [
        Case("POST", lambda sc: f"{SIG}/policies/{sc.policy.pk}/retry/", OPERATE(200), _empty),
    ],
    # Operations read like signatures (issue 12): ``_operation`` is a finished one of prod.
    "signing-operation-list": [Case("GET", lambda sc: _operations(sc), LIST, scoped_list=True)],
    "signing-operation-detail": [
        Case("GET", lambda sc: f"{SIG}/operations/{_operation(sc).pk}/", DETAIL),
    ],
    "signing-signature-list": [listing(f"{SIG}/signatures/")],
    "signing-signature-detail": [
        Case("GET", lambda sc: f"{SIG}/signatures/{sc.signed.pk}/", DETAIL),
    ],
    "signing-signature-retry": [
        Case("POST", lambda sc: f"{SIG}/signatures/{sc.signed.pk}/retry/", OPERATE(200), _empty),
    ],
    "signing-sign": [
        Case(
            "POST",
            lambda sc: f"{SIG}/sign/",
            OPERATE(200),
            lambda sc: {
                "instance": "prod",
                "namespace": "team",
                "repository": "app",
                "tags": ["v2"],
            },
        ),
    ],
    "signing-verify": [
        # "other" has the permission (on its own instance) but prod's image is not found.
        Case(
            "POST",
            lambda sc: f"{SIG}/verify/",
            DETAIL,
            lambda sc: {"image": f"{sc.domain}/team/app:v1"},
        ),
    ],
    "signing-namespace-list": [listing(f"{SIG}/namespaces/")],
    "signing-namespace-detail": [
        Case("GET", lambda sc: f"{SIG}/namespaces/{sc.team.pk}/", DETAIL),
    ],
    # The audit log: every role reads its scope's events (audit.view_auditevent);
    # ``sc.event`` is an event of prod, which "other" (a reader of elsewhere) cannot see.
    "audit-event-list": [listing("/api/v1/audit/events/")],
    "audit-event-detail": [
        Case("GET", lambda sc: f"/api/v1/audit/events/{sc.event.pk}/", DETAIL),
    ],
    # Every signed-in user manages its own token.
    "auth-token": [
        Case("POST", lambda sc: "/api/v1/auth/token/", _s(401, 201, 201, 201, 201, 201), _empty),
        Case("DELETE", lambda sc: "/api/v1/auth/token/", _s(401, 204, 204, 204, 204, 204)),
    ],
    # The OpenAPI schema and docs: any signed-in user.
    "api-schema": [Case("GET", lambda sc: "/api/v1/schema/", _s(401, 200, 200, 200, 200, 200))],
    # The docs pages send the anonymous to the login page.
    "api-docs": [Case("GET", lambda sc: "/api/v1/docs/", _s(302, 200, 200, 200, 200, 200))],
    "api-redoc": [Case("GET", lambda sc: "/api/v1/redoc/", _s(302, 200, 200, 200, 200, 200))],
}

# Rows kept for routes that may be switched off (the docs pages are optional).
OPTIONAL_ROUTES = {"api-redoc", "api-docs"}


def test_every_api_route_has_a_row_for_each_of_its_methods():
    routes = api_routes()

    missing = sorted(set(routes) - set(MATRIX))
    assert not missing, f"API routes without a row in the permission matrix: {missing}"
    stale = sorted(set(MATRIX) - set(routes) - OPTIONAL_ROUTES)
    assert not stale, f"matrix rows for routes that no longer exist: {stale}"
    for name, methods in routes.items():
        if methods is None:
            continue
        covered = {case.method for case in MATRIX[name]}
        assert methods <= covered, f"{name}: no matrix case for {sorted(methods - covered)}"


CASES = [
    pytest.param(name, index, id=f"{name}-{case.method}")
    for name, cases in MATRIX.items()
    for index, case in enumerate(cases)
]


@pytest.mark.parametrize(("name", "index"), CASES)
def test_the_matrix(scene, name, index):
    if name not in api_routes():
        assert name in OPTIONAL_ROUTES
        return
    case = MATRIX[name][index]
    url = case.url(scene)
    failures = []
    for persona, expected in zip(PERSONAS, case.statuses, strict=True):
        client = client_for(scene, persona)
        body = case.body(scene) if case.body else None
        before = snapshot()
        with transaction.atomic():
            call = getattr(client, case.method.lower())
            response = call(url, body, format="json") if body is not None else call(url)
            after = snapshot()
            transaction.set_rollback(True)
        if response.status_code != expected:
            failures.append(
                f"{persona}: {response.status_code} (expected {expected}) "
                f"{response.content[:200]!r}"
            )
        elif case.scoped_list and expected == 200:
            shows_prod = case.marker in response.content
            if persona in OUTSIDERS and shows_prod:
                failures.append(f"{persona}: the list shows prod's objects")
            if persona in INSIDERS and not shows_prod:
                failures.append(f"{persona}: the list misses prod's objects")
        elif expected >= 400 and after != before:
            changed = [label for label in before if before[label] != after[label]]
            failures.append(f"{persona}: refused with {expected} but changed {changed}")
        if response.status_code >= 400 and response.get("Content-Type", "").startswith(
            "application/json"
        ):
            assert "code" in response.json(), (persona, response.content)  # the error shape
    assert not failures, f"{case.method} {url}:\n" + "\n".join(failures)
