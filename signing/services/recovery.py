"""Recovery of signing work nobody is doing any more: a worker died holding a row, or the
work was handed off (to the pool, to the broker) and never started. Run periodically by
the ``signing.tasks.recover_stale`` task (celery beat)."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from signing.constants import CLAIM_SECONDS
from signing.dispatch import dispatch
from signing.models import Signature
from signing.selectors import given_up, needs_signing
from signing.services.worker import sign_signatures


def stalled_signature_ids(*, now=None, limit: int | None = None) -> list[int]:
    """Rows that need signing and that no live worker holds: a claim that lapsed (its
    worker died), or pending work handed off a claim's length ago and never claimed."""
    now = now or timezone.now()
    stale = now - timedelta(seconds=CLAIM_SECONDS)
    stalled = (
        Signature.objects.filter(needs_signing())
        .exclude(given_up())
        .filter(
            Q(claimed_until__lt=now)
            | Q(claimed_until__isnull=True, next_attempt_at__isnull=True, updated_at__lte=stale)
        )
        .order_by("id")
        .values_list("id", flat=True)
    )
    return list(stalled[:limit] if limit else stalled)


def recover_stalled_signatures(*, now=None, limit: int | None = None) -> list[int]:
    """Hand the stalled rows to the workers again (``dispatch``); returns their ids. A row
    a worker takes meanwhile is skipped by the claim, so running this twice is harmless."""
    ids = stalled_signature_ids(now=now, limit=limit)
    if ids:
        dispatch(sign_signatures, ids)
    return ids
