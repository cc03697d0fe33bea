"""Request hygiene shared by the admin and the API."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse


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
