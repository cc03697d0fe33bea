"""Audit events of ``accounts``, which sits below ``audit`` and announces its membership
changes as signals (``accounts.events``) instead of calling ``record``. Connected by
``AuditConfig.ready()``; run inside the transaction of the change, like a direct call."""

from __future__ import annotations

from typing import Any

from accounts import events as accounts_events
from audit.services import record


def _about(membership: Any) -> dict[str, Any]:
    """The object and instance arguments of a membership's event."""
    return {
        "obj": membership,
        "instance": membership.instance,
        "instance_name": membership.instance.name,
    }


def membership_granted(sender: Any, *, membership: Any, actor: Any, details: Any, **_: Any) -> None:
    record("accounts.membership.granted", **_about(membership), actor=actor, details=details)


def membership_changed(
    sender: Any, *, membership: Any, actor: Any, changes: Any, details: Any, **_: Any
) -> None:
    record(
        "accounts.membership.changed",
        **_about(membership),
        actor=actor,
        changes=changes,
        details=details,
    )


def membership_revoked(sender: Any, *, membership: Any, actor: Any, details: Any, **_: Any) -> None:
    record("accounts.membership.revoked", **_about(membership), actor=actor, details=details)


def connect() -> None:
    for signal, receiver in (
        (accounts_events.membership_granted, membership_granted),
        (accounts_events.membership_changed, membership_changed),
        (accounts_events.membership_revoked, membership_revoked),
    ):
        signal.connect(receiver, dispatch_uid=f"audit.{receiver.__name__}")
