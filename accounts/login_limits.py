"""Admin sign-in limits: django-axes counts failed sign-ins per user name and per address.

Settings (``SIGNET_LOGIN_FAILURE_LIMIT``, ``SIGNET_LOGIN_LOCKOUT_MINUTES``) are in
``config/settings.py``. After that many failures for one user name, or from one address,
within the lock-out time, further sign-ins for that name or from that address are refused
with 429 and a page that says why and for how long, even with the right password.
``manage.py axes_reset_username <name>`` / ``axes_reset_ip <address>`` lift a lock-out early.
Addresses are those the audit log records (``audit.context.client_address``).
"""

from __future__ import annotations

import math
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def lockout_minutes() -> int:
    return max(1, math.ceil(settings.AXES_COOLOFF_TIME.total_seconds() / 60))


def lockout_response(
    request: HttpRequest, original_response: Any = None, credentials: Any = None
) -> HttpResponse:
    """429, the reason and the wait, in the admin's look (and ``Retry-After``)."""
    minutes = lockout_minutes()
    response = render(
        request,
        "accounts/login_locked_out.html",
        {
            **admin.site.each_context(request),
            "minutes": minutes,
            "failure_limit": settings.AXES_FAILURE_LIMIT,
            "title": "Sign-in temporarily locked",
        },
        status=429,
    )
    response["Retry-After"] = str(minutes * 60)
    return response
