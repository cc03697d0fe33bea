"""The registry notifications endpoint: ``POST /api/v1/registry/instances/<name>/events/``.

A plain Django view (no session, no CSRF, no DRF authentication): the registry
authenticates with the instance's webhook token as ``Authorization: Bearer <token>``.
Checks run in this order: 405 method, 401 token (an unknown instance answers like a wrong
token, so instance names cannot be probed), 415 content type, 413 body size
(Content-Length, then the bytes really read), 400 JSON and envelope. The request only
touches the database: no registry or KMS call, so it answers fast.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from config.errors import DomainError
from registry.metrics import count_recorded_events, count_rejected_deliveries
from registry.models import Instance
from registry.services.events import WEBHOOK_CONTENT_TYPES, parse_integer
from registry.services.recording import record_events
from registry.services.webhook_tokens import authenticated_webhook_instance

logger = logging.getLogger(__name__)


def _error(status: int, code: str, message: str, **extra: Any) -> JsonResponse:
    response = JsonResponse({"code": code, "message": message, **extra}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="signet-registry-webhook"'
    return response


def _bearer_token(request: HttpRequest) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _authenticated(request: HttpRequest, instance_name: str) -> Instance | JsonResponse:
    """The instance whose webhook token the request carries, or the 401 answer."""
    token = _bearer_token(request)
    if token is None:
        return _error(
            401,
            "AuthFailure",
            "Send the instance's webhook token as 'Authorization: Bearer <token>'.",
        )
    # An unknown instance answers exactly like a wrong token: the webhook must not tell
    # whoever probes it which instance names exist.
    instance = authenticated_webhook_instance(name=instance_name, token=token)
    if instance is None:
        logger.warning("registry webhook: wrong token or unknown instance %.60r", instance_name)
        return _error(401, "AuthFailure", "The webhook token is not valid for this instance.")
    return instance


def _content_type_refused(request: HttpRequest) -> JsonResponse | None:
    content_type = request.content_type or ""
    if content_type.lower() in WEBHOOK_CONTENT_TYPES:
        return None
    return _error(
        415,
        "UnsupportedMediaType",
        f"Content-Type must be {' or '.join(WEBHOOK_CONTENT_TYPES)}, "
        f"not {content_type[:100] or 'missing'!r}.",
    )


def _read_body(request: HttpRequest) -> bytes | JsonResponse:
    """The body, or the 413 (or 400) answer: Content-Length first, then the bytes read."""
    limit = settings.REGISTRY_WEBHOOK_MAX_BODY_BYTES
    too_large = _error(413, "RequestTooLarge", f"The body is larger than {limit} bytes.")
    try:
        declared = int(request.headers.get("Content-Length") or 0)
    except ValueError:
        return _error(400, "InvalidParameter", "Content-Length is not a number.")
    if declared > limit:
        return too_large
    body = request.read(limit + 1)
    if len(body) > limit:
        return too_large
    return body


def _parse_json(body: bytes) -> Any:
    """The JSON document, or the 400 answer (a document never decodes to a response).

    Integers too long for any count are left unconverted, for the envelope's validation to
    refuse by field name (``parse_integer``)."""
    try:
        return json.loads(body.decode("utf-8"), parse_int=parse_integer)
    except UnicodeDecodeError:
        return _error(400, "InvalidParameter", "The body is not UTF-8 text.")
    except json.JSONDecodeError as exc:
        return _error(
            400,
            "InvalidParameter",
            f"The body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).",
        )
    except RecursionError:
        return _error(400, "InvalidParameter", "The body is nested too deeply.")


def _recorded(instance: Instance, envelope: Any) -> JsonResponse:
    try:
        result = record_events(instance=instance, envelope=envelope)
    except DomainError as exc:
        fields = getattr(exc, "fields", None)
        error = {"code": exc.code, "message": exc.message, **({"fields": fields} if fields else {})}
        return JsonResponse(error, status=exc.http_status)
    count_recorded_events(result)
    return JsonResponse(result.as_dict(), status=200)


@count_rejected_deliveries
@csrf_exempt
def registry_events(request: HttpRequest, instance_name: str) -> JsonResponse:
    if request.method != "POST":
        response = _error(405, "UnsupportedOperation", "Only POST is allowed here.")
        response["Allow"] = "POST"
        return response
    instance = _authenticated(request, instance_name)
    if isinstance(instance, JsonResponse):
        return instance
    refused = _content_type_refused(request)
    if refused is not None:
        return refused
    body = _read_body(request)
    if isinstance(body, JsonResponse):
        return body
    envelope = _parse_json(body)
    if isinstance(envelope, JsonResponse):
        return envelope
    return _recorded(instance, envelope)
