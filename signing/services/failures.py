"""How a failed attempt is described and when it is tried again (signing and cleanups)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings

from config.errors import DomainError


def backoff(attempts: int) -> timedelta:
    base = settings.SIGNING_RETRY_BASE_SECONDS
    return timedelta(
        seconds=min(base * 2 ** max(attempts - 1, 0), settings.SIGNING_RETRY_MAX_SECONDS)
    )


def failure_reason(exc: Exception) -> tuple[str, str]:
    if isinstance(exc, DomainError):
        return exc.code, exc.message
    return "InternalError", f"{type(exc).__name__}: {exc}"
