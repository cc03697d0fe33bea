"""A request's client address exactly as the audit log records it, for other code that
counts by address (the admin sign-in limits, ``AXES_CLIENT_IP_CALLABLE``): one rule for
which proxy hop to trust (``AUDIT_TRUST_X_FORWARDED_FOR``), wherever an address counts."""

from __future__ import annotations

from django.http import HttpRequest

from audit import context


def client_ip(request: HttpRequest) -> str | None:
    with context.bound_request(request):
        return context.source_ip()
