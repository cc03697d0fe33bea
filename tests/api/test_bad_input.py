"""Bad input answers 400 with the project's error body on every API route, never 500.

The routes come from the URL conf, so a new list or a new endpoint is covered without
touching this file: every list bounds ``?limit=`` and ``?offset=``, and every route
that takes a body survives JSON nested fifty thousand levels deep.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from config.pagination import MAX_LIMIT, MAX_OFFSET
from tests.api.conftest import auth

pytestmark = pytest.mark.django_db

_PARAM = re.compile(r"\(\?P<(\w+)>[^)]*\)|<(?:\w+:)?(\w+)>")
DEEP_JSON = "[" * 50_000


def _walk(patterns: list[Any], prefix: str = ""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern), pattern


def _api_routes() -> list[tuple[str, URLPattern]]:
    routes = []
    for route, pattern in _walk(get_resolver().url_patterns):
        route = route.replace("^", "").replace("$", "").replace("\\", "")
        if route.startswith("api/") and "(?P<format>" not in route and "<format>" not in route:
            routes.append((route, pattern))
    return routes


def _methods(pattern: URLPattern) -> set[str]:
    actions = getattr(pattern.callback, "actions", None)
    if actions is not None:
        return {method.upper() for method in actions}
    view_class = getattr(pattern.callback, "view_class", None) or getattr(
        pattern.callback, "cls", None
    )
    if view_class is None:  # a plain function view (the webhook): tested on its own
        return set()
    return {m.upper() for m in view_class.http_method_names if hasattr(view_class, m)}


LIST_ROUTES = sorted(
    "/" + route
    for route, pattern in _api_routes()
    if (getattr(pattern.callback, "actions", None) or {}).get("get") == "list"
)
BODY_ROUTES = sorted(
    ("/" + route, method)
    for route, pattern in _api_routes()
    for method in sorted(_methods(pattern) & {"POST", "PUT", "PATCH"})
)


_KINDS = {
    "instances": "instance",
    "namespaces": "namespace",
    "policies": "policy",
    "tags": "tag",
    "repositories": "repository",
    "manifests": "manifest",
    "keys": "key",
}


def _url(route: str, seeded: dict[str, Any]) -> str:
    """A route with its parameters filled in with seeded rows (by the path segment before)."""

    def value(match: re.Match) -> str:
        if (match.group(1) or match.group(2)) == "instance_name":
            return seeded["instance"].name
        collection = route[: match.start()].rstrip("/").rsplit("/", 1)[-1]
        kind = _KINDS.get(collection)
        if kind is None:
            return "999999"  # nothing seeded of this kind: a missing object
        row = seeded[kind]
        return str(row.key_id if kind == "key" else row.pk)

    return _PARAM.sub(value, route)


def test_the_routes_were_found():
    assert "/api/v1/registry/tags/" in LIST_ROUTES
    assert len(LIST_ROUTES) >= 8
    assert ("/api/v1/registry/instances/", "POST") in BODY_ROUTES


@pytest.fixture
def api(seeded, admin_token, no_throttling) -> APIClient:
    client = APIClient()
    client.credentials(**auth(admin_token))
    return client


def _assert_bad_parameter(response, name: str) -> None:
    assert response.status_code == 400, (response.status_code, response.content[:300])
    body = response.json()
    assert body["code"] == "InvalidParameterValue"  # as for a malformed ?instance= id
    assert name in body["message"]
    assert name in body["fields"]


@pytest.mark.parametrize("route", LIST_ROUTES)
@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("limit=999999999999999999999", "limit"),
        (f"limit={MAX_LIMIT + 1}", "limit"),
        ("limit=0", "limit"),
        ("limit=-5", "limit"),
        ("limit=ten", "limit"),
        ("limit=%C2%B2", "limit"),
        ("offset=999999999999999999999", "offset"),
        (f"offset={MAX_OFFSET + 1}", "offset"),
        ("offset=-1", "offset"),
        ("offset=1e3", "offset"),
    ],
)
def test_every_list_answers_400_naming_an_out_of_range_or_malformed_page_parameter(
    api, seeded, route, query, name
):
    _assert_bad_parameter(api.get(f"{_url(route, seeded)}?{query}"), name)


@pytest.mark.parametrize("route", LIST_ROUTES)
def test_every_list_accepts_the_largest_page_and_offset(api, seeded, route):
    response = api.get(f"{_url(route, seeded)}?limit={MAX_LIMIT}&offset={MAX_OFFSET}")
    assert response.status_code == 200, response.content[:300]
    assert response.json()["results"] == []


def test_the_documented_bounds_are_the_enforced_ones(api):
    schema = api.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    limit = next(
        p
        for p in schema["paths"]["/api/v1/registry/tags/"]["get"]["parameters"]
        if p["name"] == "limit"
    )
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, MAX_LIMIT)


@pytest.mark.parametrize(("route", "method"), BODY_ROUTES)
def test_json_nested_too_deeply_never_answers_500(api, seeded, route, method):
    """A view that reads the body answers 400; one that never reads it is unaffected."""
    url = _url(route, seeded)
    response = api.generic(method, url, DEEP_JSON, content_type="application/json")
    assert response.status_code != 500, response.content[:300]
    if response.status_code == 400:
        assert response.json()["code"] == "InvalidParameter"


# The collections' POST (create, sign, verify...), which all read a body; the token
# endpoint takes none.
CREATE_ROUTES = [
    (route, method)
    for route, method in BODY_ROUTES
    if "(?P<" not in route
    and "<int:" not in route
    and method == "POST"
    and route != "/api/v1/auth/token/"
]


@pytest.mark.parametrize(("route", "method"), CREATE_ROUTES)
def test_json_nested_too_deeply_answers_400_where_the_body_is_read(api, route, method):
    response = api.generic(method, route, DEEP_JSON, content_type="application/json")
    assert response.status_code == 400, (response.status_code, response.content[:300])
    body = response.json()
    assert body["code"] == "InvalidParameter"
    assert "nested too deeply" in body["message"]
