"""The OpenAPI schema: served from the code, complete, with one documented error shape."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
from django.core.management import call_command
from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.generators import SchemaGenerator

from config.openapi import ERROR_STATUSES, WEBHOOK_PATH
from tests.api.conftest import auth

SCHEMA_URL = "/api/v1/schema/?format=json"
ERROR_REF = "#/components/schemas/ErrorResponse"
# Routes that are the documentation itself, not part of the API it documents.
DOCUMENTATION_ROUTES = {"/api/v1/schema/", "/api/v1/docs/"}


def _api_routes() -> set[str]:
    """Every route under /api/v1/ in the URL conf, as an OpenAPI path template."""
    routes: set[str] = set()

    def walk(patterns, prefix: str) -> None:
        for pattern in patterns:
            text = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, text)
            elif isinstance(pattern, URLPattern):
                routes.add(text)

    walk(get_resolver().url_patterns, "/")
    templates = set()
    for route in routes:
        if not route.startswith("/api/v1/"):
            continue
        if route.endswith("$") or "(?P<" in route:  # a router's regex route
            route = route.lstrip("^").rstrip("$").replace("^", "")
            route = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", route)
            route = route.replace("\\.", ".")
        route = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)
        if "{format}" in route:  # format-suffix variants of the same operation
            continue
        templates.add(route)
    return templates


def _operations(schema: dict):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in {"get", "post", "put", "patch", "delete"}:
                yield path, method, operation


@pytest.fixture
def served(client, admin_token) -> dict:
    response = client.get(SCHEMA_URL, **auth(admin_token))
    assert response.status_code == 200
    return json.loads(response.content)


def test_it_serves_the_openapi_schema_generated_from_the_code(served):
    assert served["openapi"].startswith("3.")
    assert served["info"]["title"] == "Signet API"
    generated = SchemaGenerator().get_schema(request=None, public=True)
    assert served["paths"] == json.loads(json.dumps(generated["paths"]))


def _shape(path: str) -> str:
    # drf-spectacular names a router's {pk} after the model field ({id}).
    return re.sub(r"\{\w+\}", "{}", path)


def test_it_documents_every_api_route_of_the_url_conf(served):
    routes = {_shape(route) for route in _api_routes() - DOCUMENTATION_ROUTES}
    documented = {_shape(path) for path in served["paths"]}
    assert _shape(WEBHOOK_PATH) in routes
    assert "/api/v1/signing/verify/" in routes
    assert routes - documented == set()
    assert documented - routes == set()


def test_every_operation_documents_a_success_body_and_the_error_responses(served):
    for path, method, operation in _operations(served):
        responses = operation["responses"]
        success = [code for code in responses if code.startswith("2")]
        assert success, f"{method} {path} documents no success response"
        for code in success:
            if code != "204":
                assert "content" in responses[code], f"{method} {path} {code} has no body"
        for status in ERROR_STATUSES:
            content = responses[status]["content"]["application/json"]
            assert content["schema"] == {"$ref": ERROR_REF}, f"{method} {path} {status}"
        assert "Retry-After" in responses["429"]["headers"]


def test_writing_operations_document_their_request_bodies(served):
    bodyless = {
        # Actions on the object in the URL: no input.
        "enable",
        "disable",
        "cancel_deletion",
        "rotate_webhook_token",
        "resign",
        "retry",
        "tags_sign",
        "auth_token",
    }
    for path, method, operation in _operations(served):
        if method not in {"post", "put", "patch"}:
            continue
        if any(operation["operationId"].endswith(f"{name}_create") for name in bodyless):
            assert "requestBody" not in operation, operation["operationId"]
            continue
        assert "requestBody" in operation, f"{method} {path} documents no request body"


def test_the_webhook_and_verify_operations_are_fully_typed(served):
    webhook = served["paths"][WEBHOOK_PATH]["post"]
    assert webhook["security"] == [{"registryWebhookToken": []}]
    assert set(webhook["requestBody"]["content"]) == {
        "application/vnd.docker.distribution.events.v1+json",
        "application/json",
    }
    components = served["components"]["schemas"]
    assert components["RegistryEventsResult"]["properties"]["received"] == {"type": "integer"}
    verify = served["paths"]["/api/v1/signing/verify/"]["post"]
    body = verify["responses"]["200"]["content"]["application/json"]["schema"]
    name = body["$ref"].rsplit("/", 1)[1]
    assert set(components[name]["properties"]) == {
        "image",
        "verified",
        "digest",
        "docker_reference",
        "key_id",
        "key_fingerprint",
        "reasons",
    }


def test_it_refuses_the_schema_to_anonymous_callers(client):
    response = client.get(SCHEMA_URL)
    assert response.status_code == 401
    assert response.json()["code"] == "AuthFailure"


def test_the_schema_is_valid_and_generates_without_warnings(tmp_path):
    target = tmp_path / "schema.yaml"
    # --fail-on-warn exits non-zero on any warning or error of the generator.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    assert "ErrorResponse" in target.read_text()


@pytest.mark.parametrize(
    ("method", "url", "body", "status", "code"),
    [
        ("get", "/api/v1/kms/keys/00000000-0000-0000-0000-000000000000/", None, 404, None),
        ("post", "/api/v1/kms/keys/", {"alias": 5}, 400, "InvalidParameter"),
        ("post", "/api/v1/signing/policies/", {"name": "x"}, 400, "InvalidParameter"),
        ("post", "/api/v1/signing/verify/", {"image": "no"}, 400, None),
        ("get", "/api/v1/signing/policies/999999/", None, 404, "PolicyNotFound"),
    ],
)
def test_real_error_responses_match_the_documented_error_shape(
    client, admin_token, served, method, url, body, status, code
):
    kwargs = {"data": json.dumps(body), "content_type": "application/json"} if body else {}
    response = getattr(client, method)(url, **kwargs, **auth(admin_token))
    assert response.status_code == status
    error = served["components"]["schemas"]["ErrorResponse"]
    jsonschema.validate(response.json(), error)
    if code:
        assert response.json()["code"] == code


def _filtered_lists() -> list[tuple[str, type]]:
    """(path, FilterSet) of every list whose view declares a ``filterset_class``."""
    found = []
    for route in _api_routes():
        match = get_resolver().resolve(re.sub(r"\{\w+\}", "1", route))
        actions = getattr(match.func, "actions", None) or {}
        filterset = getattr(getattr(match.func, "cls", None), "filterset_class", None)
        if actions.get("get") == "list" and filterset is not None:
            found.append((route, filterset))
    return sorted(found, key=lambda item: item[0])


def test_every_list_filter_is_documented_with_its_type_and_description(served):
    lists = _filtered_lists()
    assert len(lists) == 11, [path for path, _ in lists]  # 11th: signing/operations/
    for path, filterset in lists:
        parameters = {
            p["name"]: p for p in served["paths"][path]["get"]["parameters"] if p["in"] == "query"
        }
        for name in filterset.base_filters:
            assert name in parameters, f"{path} does not document ?{name}="
            parameter = parameters[name]
            assert parameter["schema"]["type"] in {"string", "integer", "boolean"}, (path, name)
            assert parameter.get("description"), f"{path} ?{name}= has no description"


@pytest.mark.parametrize(
    ("path", "name", "schema"),
    [
        ("/api/v1/registry/tags/", "namespace", {"type": "integer"}),
        ("/api/v1/signing/policies/", "instance", {"type": "string"}),
        ("/api/v1/signing/policies/", "disabled", {"type": "boolean"}),
        (
            "/api/v1/signing/signatures/",
            "status",
            {"type": "string", "enum": ["failed", "pending", "signed"]},
        ),
        (
            "/api/v1/kms/keys/",
            "key_state",
            {"type": "string", "enum": ["Disabled", "Enabled", "PendingDelete"]},
        ),
        ("/api/v1/audit/events/", "since", {"type": "string", "format": "date-time"}),
    ],
)
def test_list_filters_have_the_type_the_api_checks(served, path, name, schema):
    parameter = next(p for p in served["paths"][path]["get"]["parameters"] if p["name"] == name)
    assert parameter["in"] == "query"
    assert parameter["schema"] == schema
