"""Issue 12, point 10: the API schema's request examples are real requests.

Swagger UI's generated example for ``POST /api/v1/signing/sign/`` filled ``tag``, ``tags``,
``repository`` and ``namespace`` at once, a body the API refuses ("Give either tag or
tags, not both."). Each operation now carries one example per way to call it, and each
passes the operation's own input validation.
"""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from signing.api import serializers as s

pytestmark = pytest.mark.django_db

SCHEMA = "/api/v1/schema/"


@pytest.fixture
def schema(superuser) -> dict:
    client = APIClient()
    client.force_authenticate(superuser)
    response = client.get(SCHEMA, {"format": "json"})
    assert response.status_code == 200
    return response.json()


def request_examples(schema: dict, path: str, method: str) -> dict[str, dict]:
    body = schema["paths"][path][method]["requestBody"]["content"]["application/json"]
    return {name: example["value"] for name, example in body.get("examples", {}).items()}


def test_the_sign_operation_has_one_valid_example_per_way_to_call_it(schema):
    examples = request_examples(schema, "/api/v1/signing/sign/", "post")

    assert set(examples) == {
        "OneTag",
        "SeveralTags",
        "EveryTagOfARepository",
        "EveryImageOfANamespace",
    }
    for name, value in examples.items():
        assert not ("tag" in value and "tags" in value), name
        serializer = s.SignSerializer(data=value)
        assert serializer.is_valid(), (name, serializer.errors)
    assert examples["OneTag"] == {
        "instance": "prod",
        "namespace": "team-a",
        "repository": "app",
        "tag": "v1",
    }
    assert examples["EveryImageOfANamespace"] == {"instance": "prod", "namespace": "team-a"}


@pytest.mark.parametrize(
    ("path", "method", "serializer"),
    [
        ("/api/v1/signing/policies/", "post", s.PolicyCreateSerializer),
        ("/api/v1/signing/policies/{id}/", "patch", s.PolicyUpdateSerializer),
        ("/api/v1/signing/verify/", "post", s.VerifySerializer),
    ],
)
def test_the_policy_and_verify_operations_have_valid_examples(schema, path, method, serializer):
    examples = request_examples(schema, path, method)

    assert len(examples) == 2
    for name, value in examples.items():
        checked = serializer(data=value)
        assert checked.is_valid(), (name, checked.errors)
