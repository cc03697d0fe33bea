"""Request hygiene shared by the admin and the API, and the API's answer while the
database is unreachable."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse

logger = logging.getLogger(__name__)

# What a client waits before retrying while the database is unreachable (seconds).
DATABASE_RETRY_AFTER_SECONDS = 5


class RejectNulCharactersMiddleware:
    """Refuse query parameters holding NUL characters with a 400.

    PostgreSQL text cannot hold NUL, so a filter or search value with one would reach
    the database and fail there (500). Request bodies are covered by DRF's CharField
    (ProhibitNullCharactersValidator) and Django's form fields.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        for name, values in request.GET.lists():
            if "\x00" in name or any("\x00" in value for value in values):
                message = f"Query parameter {name!r} must not contain NUL characters."
                if request.path.startswith("/api/"):
                    return JsonResponse(
                        {
                            "code": "InvalidParameter",
                            "message": message,
                            "fields": {name.replace("\x00", ""): [message]},
                        },
                        status=400,
                    )
                return HttpResponseBadRequest(message)
        return self.get_response(request)


class DatabaseUnavailableMiddleware:
    """Answer an API request that met an unreachable database with a JSON 503.

    Connection refused, closed or reset (``OperationalError``, ``InterfaceError``) is a
    passing state: every path under ``/api/`` (DRF views, whose exception handler passes
    these on, and plain views such as the registry webhook) answers the API's error body
    with ``Retry-After``, so the registry re-delivers its notification and clients retry.
    The admin keeps Django's error page. Neither the body nor the log carries the driver's
    message: it names the database host and port.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not request.path.startswith("/api/"):
            return None
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        # The driver's own error (psycopg's carries a SQLSTATE, e.g. 57P01 for a shutdown).
        cause = exception.__cause__ or exception
        sqlstate = getattr(cause, "sqlstate", None)
        logger.error(
            "database unreachable, answered 503: %s %s (%s%s)",
            request.method,
            request.path[:200],
            type(cause).__name__,
            f", SQLSTATE {sqlstate}" if sqlstate else "",
        )
        response = JsonResponse(
            {
                "code": "InternalError.DatabaseUnavailable",
                "message": "The database is unavailable; retry after "
                f"{DATABASE_RETRY_AFTER_SECONDS} seconds.",
            },
            status=503,
        )
        response["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
        return response
