"""The signing worker's batched writes: claiming a page of rows in one short transaction,
and storing many signed rows with one UPDATE per key. What ``worker.sign_signatures``
does per page instead of per row, so an image costs no query of its own."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Case, F, Field, Q, Value, When
from django.db.models.functions import Cast
from django.utils import timezone

from signing.constants import CLAIM_SECONDS, SIGNING_ALGORITHM
from signing.models import Signature, SignatureStatus
from signing.selectors import needs_signing
from signing.services.workers import current_worker_id, lease

# Rows one statement claims when a worker signs many: a page is signed within seconds of
# its claim (its worker's heartbeat renews the lease meanwhile), and a row another worker
# could take waits behind at most this many.
CLAIM_PAGE = 25


def claim_page(ids: Sequence[int]) -> list[Signature]:
    """Take the rows of ``ids`` that need signing and nobody holds; the rows taken, in
    ``ids`` order, with what signing them reads (policy, key, instance, repository).

    One transaction, two statements for the whole page: the rows are read and locked
    together (PostgreSQL: ``FOR UPDATE SKIP LOCKED``, re-checked on the row version it
    locks, so a row another worker is claiming right now is left to it; SQLite: the
    transaction takes the database's write lock when it starts), then claimed by one
    UPDATE of exactly those rows: a claim lease, the claiming worker, one more attempt.
    """
    if not ids:
        return []
    now = timezone.now()
    # A registered worker's heartbeat extends a short claim while it works; anyone else
    # (inline signing outside a worker) holds it for the long lease.
    worker_id = current_worker_id()
    until = now + (lease() if worker_id is not None else timedelta(seconds=CLAIM_SECONDS))
    # A locking read, not one UPDATE with needs_signing()'s join: PostgreSQL makes that
    # "id IN (subquery)", re-checked against the old snapshot, and concurrent workers all
    # claimed (and signed) one row. FOR UPDATE re-checks the whole condition, joins
    # included, on the row version it locks.
    with transaction.atomic():
        rows = list(
            Signature.objects.select_related(
                "policy__key", "policy__namespace__instance", "manifest__repository"
            )
            .filter(needs_signing(), pk__in=list(ids))
            .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
            .select_for_update(skip_locked=True, of=("self",))
            .order_by("pk")
        )
        if rows:
            Signature.objects.filter(pk__in=[row.pk for row in rows]).update(
                claimed_until=until, claimed_by=worker_id, attempts=F("attempts") + 1
            )
    for row in rows:
        row.claimed_until, row.claimed_by_id, row.attempts = until, worker_id, row.attempts + 1
    order = {pk: n for n, pk in enumerate(ids)}
    return sorted(rows, key=lambda row: order[row.pk])


# What a signed row has of its own; the rest of what signing writes is the same for every
# row signed with one key at one time (``store_signed``).
_OWN_FIELDS = ("docker_reference", "payload", "signature_value", "sig_manifest_digest")


def _own_values(rows: Sequence[Signature], name: str) -> Any:
    """``CASE id WHEN .. THEN ..``: each row's own value of the field ``name``."""
    field = Signature._meta.get_field(name)
    assert isinstance(field, Field)
    case = Case(
        *(When(pk=row.pk, then=Value(getattr(row, name), output_field=field)) for row in rows),
        output_field=field,
    )
    return (
        Cast(case, output_field=field)
        if connection.features.requires_casted_case_in_updates
        else case
    )


def store_signed(rows: Sequence[Signature], now) -> int:
    """Write the signed rows (marked signed by the worker): one UPDATE per key, the shared
    values as such and the four a row has of its own as CASE (``bulk_update`` would make
    a CASE of all fifteen). How many rows were still there."""
    by_key: dict[Any, list[Signature]] = {}
    for row in rows:
        by_key.setdefault(row.key_id, []).append(row)
    updated = 0
    for group in by_key.values():
        first = group[0]
        updated += Signature.objects.filter(pk__in=[row.pk for row in group]).update(
            status=SignatureStatus.SIGNED,
            key_id=first.key_id,
            key_fingerprint=first.key_fingerprint,
            algorithm=SIGNING_ALGORITHM,
            signed_at=now,
            failure_code="",
            failure_reason="",
            next_attempt_at=None,
            claimed_until=None,
            claimed_by=None,
            updated_at=now,
            **{name: _own_values(group, name) for name in _OWN_FIELDS},
        )
    return updated
