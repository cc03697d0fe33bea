"""OpenAPI (drf-spectacular) plumbing: the shared error shape and the schema hooks.

- ``ErrorResponse`` is the one error body of the API (``config.api.exception_handler``
  and the registry webhook render it): ``{"code", "message", "fields"?, "details"?}``.
- ``add_error_responses`` (a postprocessing hook, see ``SPECTACULAR_SETTINGS``) adds the
  standard error responses, all referencing ``ErrorResponse``, to every operation, and
  documents the registry webhook, a plain Django view drf-spectacular cannot see.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.urls import reverse
from drf_spectacular.views import SpectacularSwaggerView
from rest_framework import exceptions, serializers

ERROR_STATUSES: dict[str, str] = {
    "400": "Invalid input (`InvalidParameter`, `InvalidParameterValue`, or a domain code "
    "such as `InvalidPolicyName`); `fields` names the offending fields.",
    "401": "Not authenticated (`AuthFailure`; `AuthFailure.TokenExpired` for an expired "
    "token): send `Authorization: Token <token>` or sign in.",
    "403": "Authenticated but not allowed (`UnauthorizedOperation`, `ServiceNotAuthorized`).",
    "404": "No such object (`ResourceNotFound`, `KeyNotFound`, `PolicyNotFound`, "
    "`ImageNotFound`, ...).",
    "409": "The object's state forbids the operation (`PolicyExists`, `KeyDisabled`, "
    "`CmkDisabled`, `NoSigningPolicy`, ...).",
    "413": "The request body is too large (`RequestTooLarge`).",
    "415": "Unsupported Content-Type (`UnsupportedMediaType`).",
    "429": "Rate limit exceeded (`RequestLimitExceeded`); retry after `Retry-After` seconds.",
    "503": "A dependency (the KMS, the registry or the database) is unavailable "
    "(`InternalError.KmsUnavailable`, `InternalError.DatabaseUnavailable`, ...); retry after "
    "`Retry-After` seconds when it is sent.",
}

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": (
        "The uniform error body. `code` is stable and meant to be programmed against; "
        "`message` is for humans."
    ),
    "properties": {
        "code": {"type": "string", "example": "PolicyExists"},
        "message": {"type": "string"},
        "fields": {
            "type": "object",
            "description": (
                "Field errors: field name -> messages (for list or nested fields, an object "
                "of them by position or name)."
            ),
            "additionalProperties": {
                "anyOf": [
                    {"type": "array", "items": {"type": "string"}},
                    {"type": "object", "additionalProperties": {}},
                ]
            },
        },
        "details": {
            "type": "object",
            "description": "Machine-readable context of the error (e.g. the key id).",
            "additionalProperties": {},
        },
    },
    "required": ["code", "message"],
}


class ErrorResponseSerializer(serializers.Serializer):
    """The uniform error body (documentation and tests; ``ERROR_SCHEMA`` is its schema)."""

    code = serializers.CharField()
    message = serializers.CharField()
    # The body's key is "fields"; DRF's serializer metaclass moves declared fields out of
    # the class, so this does not shadow Serializer.fields at runtime, but django-stubs'
    # types cannot express that.
    fields = serializers.DictField(required=False)  # type: ignore[assignment]
    details = serializers.DictField(required=False)


_ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}

# --- the registry webhook (a plain Django view) ----------------------------------------------

WEBHOOK_PATH = "/api/v1/registry/instances/{instance_name}/events/"
WEBHOOK_SECURITY_SCHEME = "registryWebhookToken"

_WEBHOOK_ENVELOPE: dict[str, Any] = {
    "type": "object",
    "description": "A docker-distribution notification envelope.",
    "properties": {
        "events": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "string", "minLength": 1},
                    "timestamp": {"type": "string", "format": "date-time"},
                    "action": {
                        "type": "string",
                        "description": "push, pull, mount or delete (others are ignored).",
                        "maxLength": 20,
                    },
                    "target": {
                        "type": "object",
                        "properties": {
                            "mediaType": {"type": "string", "maxLength": 255},
                            "digest": {"type": "string", "example": "sha256:" + "0" * 64},
                            "size": {"type": "integer", "minimum": 0},
                            "length": {"type": "integer", "minimum": 0},
                            "repository": {"type": "string", "example": "team/app"},
                            "url": {"type": "string"},
                            "tag": {"type": "string"},
                            "references": {
                                "type": "array",
                                "items": {"type": "object", "additionalProperties": {}},
                            },
                        },
                        "required": ["repository"],
                        "additionalProperties": {},
                    },
                    "request": {"type": "object", "additionalProperties": {}},
                    "actor": {"type": "object", "additionalProperties": {}},
                    "source": {"type": "object", "additionalProperties": {}},
                },
                "required": ["id", "action", "target"],
                "additionalProperties": {},
            },
        }
    },
    "required": ["events"],
}

_WEBHOOK_RESULT_FIELDS = (
    "received",
    "processed",
    "ignored",
    "duplicates",
    "namespaces_created",
    "repositories_created",
    "manifests_created",
    "manifests_deleted",
    "tags_created",
    "tags_moved",
    "tags_unchanged",
    "tags_deleted",
    "handler_errors",
)

_WEBHOOK_RESULT: dict[str, Any] = {
    "type": "object",
    "description": "What the delivery changed (counts).",
    "properties": {name: {"type": "integer"} for name in _WEBHOOK_RESULT_FIELDS},
    "required": list(_WEBHOOK_RESULT_FIELDS),
}


def _webhook_operation() -> dict[str, Any]:
    body = {"$ref": "#/components/schemas/RegistryNotificationEnvelope"}
    return {
        "operationId": "registry_instances_events_create",
        "summary": "Receive the registry's notifications (push/delete events).",
        "description": (
            "The endpoint a registry's `notifications.endpoints` entry posts to. It does not "
            "take user tokens or sessions: the registry authenticates with the instance's "
            "webhook token (`Authorization: Bearer <token>`, returned when the instance is "
            "created or its token rotated). Checks, in order: 401 token (an unknown instance "
            "answers the same 401, so names cannot be probed), "
            "415 content type, 413 body size (`REGISTRY_WEBHOOK_MAX_BODY_BYTES`), 400 JSON and "
            "envelope (naming the first bad field). While the database is unreachable it "
            "answers 503 with `Retry-After` and records nothing, so the registry re-delivers. "
            "Redelivered events are counted in `duplicates`."
        ),
        "tags": ["registry"],
        "parameters": [
            {
                "name": "instance_name",
                "in": "path",
                "required": True,
                "schema": {"type": "string"},
                "description": "The registry instance's name.",
            }
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/vnd.docker.distribution.events.v1+json": {"schema": body},
                "application/json": {"schema": body},
            },
        },
        "security": [{WEBHOOK_SECURITY_SCHEME: []}],
        "responses": {
            "200": {
                "description": "Recorded.",
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/RegistryEventsResult"}
                    }
                },
            }
        },
    }


# --- the hook ----------------------------------------------------------------------------------

_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _error_response(status: str) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": ERROR_STATUSES[status],
        "content": {"application/json": {"schema": _ERROR_REF}},
    }
    if status in ("429", "503"):
        response["headers"] = {
            "Retry-After": {
                "description": "Seconds to wait before retrying.",
                "schema": {"type": "integer"},
            }
        }
    return response


def add_error_responses(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: errors everywhere, plus the webhook."""
    components = result.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["ErrorResponse"] = ERROR_SCHEMA
    schemas["RegistryNotificationEnvelope"] = _WEBHOOK_ENVELOPE
    schemas["RegistryEventsResult"] = _WEBHOOK_RESULT
    components.setdefault("securitySchemes", {})[WEBHOOK_SECURITY_SCHEME] = {
        "type": "http",
        "scheme": "bearer",
        "description": "The registry instance's webhook token (only for the events endpoint).",
    }

    paths = result.setdefault("paths", {})
    paths.setdefault(WEBHOOK_PATH, {})["post"] = _webhook_operation()
    result["paths"] = dict(sorted(paths.items()))

    for operations in paths.values():
        for method, operation in operations.items():
            if method not in _METHODS:
                continue
            responses = operation.setdefault("responses", {})
            for status in ERROR_STATUSES:
                # A documented error (e.g. one with a specific description) is kept.
                existing = responses.get(status)
                if existing is None:
                    responses[status] = _error_response(status)
                elif "content" not in existing:
                    existing["content"] = {"application/json": {"schema": _ERROR_REF}}
            responses.pop("default", None)
    return result


# --- the docs page -----------------------------------------------------------------------------


class DocsView(SpectacularSwaggerView):
    """Swagger UI for signed-in users (session or token); assets from the sidecar package.

    An anonymous visitor is sent to the admin login page, then back here: the page is
    HTML for people, while the schema itself answers 401 with the error body.
    """

    def handle_exception(self, exc: Exception) -> Any:
        if isinstance(exc, exceptions.NotAuthenticated):
            return redirect_to_login(self.request.get_full_path(), login_url=reverse("admin:login"))
        return super().handle_exception(exc)
