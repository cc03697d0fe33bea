"""Request examples of the signing API's OpenAPI schema: one per way to call an operation
(Swagger UI's generated example filled ``tag``, ``tags``, ``repository`` and
``namespace`` at once, a request the API refuses)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample

POLICY_CREATE = [
    OpenApiExample(
        "Create a policy",
        summary="Sign team-a's images with key image-signing",
        description="The domain defaults to the instance's default domain.",
        value={
            "instance": "prod",
            "namespace": "team-a",
            "name": "team-a-signing",
            "key": "image-signing",
        },
        request_only=True,
    ),
    OpenApiExample(
        "Create a disabled policy for a custom domain",
        value={
            "instance": "prod",
            "namespace": "team-a",
            "name": "team-a-signing",
            "key": "image-signing",
            "domain": "images.example.com",
            "disabled": True,
        },
        request_only=True,
    ),
]

POLICY_UPDATE = [
    OpenApiExample("Change the key", value={"key": "image-signing-2"}, request_only=True),
    OpenApiExample("Disable the policy", value={"disabled": True}, request_only=True),
]

# One example per way to call it: Swagger's generated one filled tag, tags,
# repository and namespace at once, which the API refuses.
SIGN = [
    OpenApiExample(
        "One tag",
        value={"instance": "prod", "namespace": "team-a", "repository": "app", "tag": "v1"},
        request_only=True,
    ),
    OpenApiExample(
        "Several tags",
        value={
            "instance": "prod",
            "namespace": "team-a",
            "repository": "team-a/app",
            "tags": ["v1", "v2"],
        },
        request_only=True,
    ),
    OpenApiExample(
        "Every tag of a repository",
        value={"instance": "prod", "namespace": "team-a", "repository": "app"},
        request_only=True,
    ),
    OpenApiExample(
        "Every image of a namespace",
        value={"instance": "prod", "namespace": "team-a"},
        request_only=True,
    ),
]

VERIFY = [
    OpenApiExample(
        "By tag", value={"image": "registry.example.com/team-a/app:v1"}, request_only=True
    ),
    OpenApiExample(
        "By digest",
        value={"image": "registry.example.com/team-a/app@sha256:" + "0" * 64},
        request_only=True,
    ),
]
