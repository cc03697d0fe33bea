"""API-wide plumbing: one exception handler gives every error the same shape.

Every error body is ``{"code": ..., "message": ..., "fields": {...}?}``.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer
from rest_framework.views import exception_handler as drf_exception_handler

from config.errors import DomainError, ValidationFailed

_DRF_CODES = {
    400: "InvalidParameter",
    401: "AuthFailure",
    403: "UnauthorizedOperation",
    404: "ResourceNotFound",
    405: "UnsupportedOperation",
    406: "NotAcceptable",
    409: "ResourceInUse",
    413: "RequestTooLarge",
    415: "UnsupportedMediaType",
    429: "RequestLimitExceeded",
}


def _flatten(detail: Any) -> Any:
    if isinstance(detail, dict):
        return {key: _flatten(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [_flatten(item) for item in detail]
    return str(detail)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DomainError):
        return Response(exc.as_dict(), status=exc.http_status)
    if isinstance(exc, DjangoValidationError):
        fields = (
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
        exc = ValidationFailed("Invalid input.", fields=fields)
        return Response(exc.as_dict(), status=exc.http_status)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()

    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten(exc.detail)
        if not isinstance(fields, dict):
            fields = {"non_field_errors": fields}
        first = next(iter(fields.items()), None)
        message = "Invalid input."
        if first:
            name, errors = first
            text = errors[0] if isinstance(errors, list) and errors else errors
            message = (
                f"Invalid input: {name}: {text}"
                if name != "non_field_errors"
                else f"Invalid input: {text}"
            )
        response.data = {"code": "InvalidParameter", "message": message, "fields": fields}
        return response
    detail = getattr(exc, "detail", None)
    # An exception may name a finer code (e.g. "AuthFailure.TokenExpired").
    code = getattr(exc, "error_code", None) or _DRF_CODES.get(response.status_code, "InternalError")
    response.data = {"code": code, "message": str(detail) if detail else str(exc)}
    return response


def error_response(exc: DomainError) -> Response:
    return Response(exc.as_dict(), status=exc.http_status)


__all__ = ["error_response", "exception_handler", "status"]


class ActionPermission(BasePermission):
    """Each view action needs its Django permission(s), listed on the view.

    A view sets ``action_permissions = {"list": "kms.view_key", ...}``; a value may be
    one permission or a tuple that must all be held. Anonymous requests get 401, users
    without the permission 403 naming it; superusers hold every permission, ``is_staff``
    alone none. An action missing from the mapping is refused, so a new action is never
    open by accident.
    """

    message = "You do not have permission to perform this action."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        action = getattr(view, "action", None)
        if action is None:
            return True  # no handler for this HTTP method: the view answers 405
        required = view.action_permissions.get(action)
        if required is None:
            self.message = f"The action {action!r} is not available."
            return False
        needed = (required,) if isinstance(required, str) else tuple(required)
        missing = [perm for perm in needed if not user.has_perm(perm)]
        if not missing:
            return True
        self.message = f"This action needs the permission {missing[0]!r}."
        return False


def validated(
    serializer_class: type[BaseSerializer], request: Request, instance: Any = None
) -> dict[str, Any]:
    """The request body checked by ``serializer_class`` (400 with field errors otherwise)."""
    serializer = serializer_class(instance, data=request.data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)
