"""What the signing views share: the instance a request names, and the bodies of
the actions that sign (the counts and each signature's status)."""

from __future__ import annotations

from typing import Any

from accounts.scoping import visible_instances
from config.errors import ValidationFailed
from registry.models import Instance
from registry.services import InstanceNotFound
from signing import services
from signing.api import serializers as s
from signing.api.views.operations import operation_ref
from signing.models import Signature
from signing.selectors import operation_failures, operation_progress
from signing.services.operations import Started

MAX_LISTED_SIGNATURES = 1000


def resolve_instance(ref: int | str, *, as_field_error: bool = False, user: Any = None) -> Instance:
    """The instance ``ref`` names; 404 (or 400 on field ``instance``) when there is none
    (or, with ``user``, when it is outside the user's scope: it answers the same)."""
    instances = Instance.objects.all() if user is None else visible_instances(user)
    instance = (
        instances.filter(pk=ref).first()
        if isinstance(ref, int)
        else instances.filter(name=ref).first()
    )
    if instance is None:
        what = f"id {ref}" if isinstance(ref, int) else f"name {ref!r}"
        message = f"No registry instance with {what}."
        if as_field_error:
            raise ValidationFailed(message, fields={"instance": [message]})
        raise InstanceNotFound(message, instance=str(ref))
    return instance


def listed_signatures(field: str, ids: list[int]) -> dict[str, Any]:
    """Each signature's status, for at most ``MAX_LISTED_SIGNATURES`` of ``ids``.

    ``field`` is ``"pk"`` (signature ids) or ``"manifest"`` (manifest ids; one signature
    per manifest, as a namespace has one policy). Slicing the ids first keeps the query
    small however large the request was.
    """
    rows = (
        Signature.objects.filter(**{f"{field}__in": ids[:MAX_LISTED_SIGNATURES]})
        .select_related("manifest__repository")
        .order_by("manifest__repository__name", "manifest__digest", "id")
    )
    return {
        "signatures": s.SignatureStatusSerializer(rows, many=True).data,
        "signatures_truncated": len(ids) > MAX_LISTED_SIGNATURES,
    }


def sign_result_body(result: services.SignRequestResult, listed: dict[str, Any]) -> dict[str, Any]:
    outcome = result.outcome
    return {
        "requested": result.requested,
        "already_signed": result.already_signed,
        "no_policy": result.no_policy,
        "signed": outcome.signed,
        "failed": outcome.failed,
        "skipped": outcome.skipped,
        "queued": result.queued,
        "failures": outcome.failures,
        **listed,
    }


def operation_result_body(started: Started | None, listed: dict[str, Any]) -> dict[str, Any]:
    """A sign/re-sign answer: the operation started (the workers sign; ``signed`` and
    ``failed`` are the figures at answer time) and each signature's status."""
    if started is None:  # nothing needed it: nothing was started
        counts = {"requested": 0, "already_signed": 0, "no_policy": 0, "signed": 0, "failed": 0}
        return {"operation": None, **counts, "skipped": 0, "queued": 0, "failures": [], **listed}
    found = operation_progress(started.operation.pk)
    assert found is not None  # just created
    operation, progress = found
    return {
        "operation": operation_ref(started),
        "requested": started.requested,
        "already_signed": started.already_signed,
        "no_policy": started.no_policy,
        "signed": progress.signed,
        "failed": progress.failed,
        "skipped": 0,
        "queued": started.queued,
        "failures": operation_failures(operation) if progress.failed else [],
        **listed,
    }
