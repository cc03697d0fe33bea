"""Binds each web request to the audit context (``audit.context``).

Install after ``AuthenticationMiddleware``. The user is not read here: DRF authenticates
token users inside the view, so ``audit.services.record`` reads ``request.user`` when it
records (DRF's ``Request.user`` setter copies the user onto this ``HttpRequest``).
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from audit import context


class AuditContextMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with context.bound_request(request):
            return self.get_response(request)
