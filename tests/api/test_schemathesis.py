"""Schemathesis against the API's schema: no 5xx, no response outside the schema.

The schema is the one ``/api/v1/schema/`` serves (``test_schema.py`` proves the served
document is this generated one). It is built at collection time, because schemathesis'
lazy ``from_fixture`` loader does not work with pytest 9. Every operation is fuzzed
against the real WSGI application, in-process, with a bounded, derandomized number of
examples, as an administrator and as a read-only sub-account. The registry webhook
takes its own bearer token, so it has its own test.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from config.openapi import WEBHOOK_PATH

CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance]
FUZZ_SETTINGS = settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def _application() -> Any:
    """The project's WSGI application, keeping the test's database connection open
    across requests (as Django's test client does), so each test's data is rolled back."""
    application = get_wsgi_application()

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        request_started.disconnect(close_old_connections)
        request_finished.disconnect(close_old_connections)
        try:
            return list(application(environ, start_response))
        finally:
            request_started.connect(close_old_connections)
            request_finished.connect(close_old_connections)

    return app


def _schema() -> Any:
    document = SchemaGenerator().get_schema(request=None, public=True)
    loaded = schemathesis.openapi.from_dict(document)
    loaded.app = _application()
    return loaded


schema = _schema()
api = schema.exclude(path=WEBHOOK_PATH)
webhook = schema.include(path=WEBHOOK_PATH)


def _token(token: str) -> dict[str, str]:
    return {"Authorization": f"Token {token}"}


@api.parametrize()
@FUZZ_SETTINGS
def test_the_api_answers_an_administrator_within_its_schema(
    case, seeded, admin_token, no_throttling
):
    case.call_and_validate(headers=_token(admin_token), checks=CHECKS)


@api.parametrize()
@FUZZ_SETTINGS
def test_the_api_answers_a_read_only_sub_account_within_its_schema(
    case, seeded, viewer_token, no_throttling
):
    # A real sub-account: a reader membership on the seeded instance, so fuzzed requests
    # reach its objects (and writes meet the 403 of a reader inside its scope).
    from django.contrib.auth import get_user_model

    from accounts.models import Role
    from tests.accounts.support import grant

    # By name: a fuzzed POST/DELETE /api/v1/auth/token/ may rotate or revoke the token.
    viewer = get_user_model().objects.get(username="api-viewer")
    grant(viewer, seeded["instance"], Role.READER)
    case.call_and_validate(headers=_token(viewer_token), checks=CHECKS)


@webhook.parametrize()
@FUZZ_SETTINGS
def test_the_registry_webhook_answers_within_its_schema(case, seeded, no_throttling):
    case.path_parameters = {"instance_name": seeded["instance"].name}
    case.call_and_validate(
        headers={"Authorization": f"Bearer {seeded['webhook_token']}"}, checks=CHECKS
    )
