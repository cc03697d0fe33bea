"""Who is acting right now, and from where: context variables the audit log reads.

- ``audit.middleware.AuditContextMiddleware`` binds each web request. The user is read
  from the request when an event is recorded, not when the request arrives: DRF
  authenticates (token or session) inside the view, and its ``Request.user`` setter
  copies the user onto the Django ``HttpRequest`` this module holds.
- ``command_actor("manage.py <command>")`` marks management-command work (a context
  manager, or a decorator on ``handle``).
- ``registry_webhook(instance_name)`` marks work done for a registry notification.
- Work on a background thread starts with an empty context: its events are ``system``.

``resolve_actor`` decides: a command/webhook context names the actor type and label (an
explicit user, if given, is kept as the actor); otherwise an explicit user; otherwise the
request's authenticated user; otherwise ``system``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.http import HttpRequest

from audit.models import ActorType


@dataclass(frozen=True)
class Actor:
    type: str
    label: str
    user: Any = None


SYSTEM = Actor(ActorType.SYSTEM, "system")

_actor: ContextVar[Actor | None] = ContextVar("audit_actor", default=None)
_request: ContextVar[HttpRequest | None] = ContextVar("audit_request", default=None)


@contextmanager
def acting_as(actor: Actor) -> Iterator[Actor]:
    token = _actor.set(actor)
    try:
        yield actor
    finally:
        _actor.reset(token)


def command_actor(label: str):
    """``with command_actor("manage.py purge_deleted_keys"):`` or ``@command_actor(...)``."""
    return acting_as(Actor(ActorType.COMMAND, label[:150]))


def registry_webhook(instance_name: str):
    """Work done on behalf of the registry instance's notifications."""
    return acting_as(Actor(ActorType.REGISTRY_WEBHOOK, f"registry:{instance_name}"[:150]))


@contextmanager
def bound_request(request: Any) -> Iterator[HttpRequest]:
    """Bind a request (Django's, or a DRF ``Request``: its ``HttpRequest`` is bound) for the
    duration of the block. The middleware does this for every web request."""
    request = getattr(request, "_request", request)
    token = _request.set(request)
    try:
        yield request
    finally:
        _request.reset(token)


def current_request() -> HttpRequest | None:
    return _request.get()


def _authenticated(user: Any) -> Any:
    return user if user is not None and getattr(user, "is_authenticated", False) else None


def current_user() -> Any:
    """The authenticated user of the bound request, read now (after DRF authenticated)."""
    request = _request.get()
    if request is None:
        return None
    return _authenticated(getattr(request, "user", None))


def resolve_actor(explicit_user: Any = None) -> Actor:
    user = _authenticated(explicit_user)
    actor = _actor.get()
    if actor is not None:
        return Actor(actor.type, actor.label, user or actor.user)
    user = user or current_user()
    if user is not None:
        return Actor(ActorType.USER, user.get_username()[:150], user)
    return SYSTEM


def _ip(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def client_address(request: HttpRequest) -> str | None:
    """The client's address: ``REMOTE_ADDR``, or with ``AUDIT_TRUST_X_FORWARDED_FOR`` the
    address the outermost trusted proxy appended to X-Forwarded-For.

    Each proxy appends the address it received the request from, so with
    ``AUDIT_TRUSTED_PROXY_COUNT`` = N trusted proxies the client is the N-th address from
    the right; everything left of it was sent by the client and proves nothing. A header
    with fewer addresses, or a malformed one there, falls back to ``REMOTE_ADDR``.
    """
    peer = _ip(request.META.get("REMOTE_ADDR", "") or "")
    if not getattr(settings, "AUDIT_TRUST_X_FORWARDED_FOR", False):
        return peer
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    # Several X-Forwarded-For headers reach WSGI joined with ",": one list either way.
    hops = forwarded.split(",") if forwarded else []
    count = max(1, int(getattr(settings, "AUDIT_TRUSTED_PROXY_COUNT", 1)))
    if len(hops) < count:
        return peer
    return _ip(hops[-count]) or peer


def source_ip() -> str | None:
    """The bound request's client address (``client_address``); None outside a request."""
    request = _request.get()
    if request is None:
        return None
    return client_address(request)
