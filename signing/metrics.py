"""The signing app's Prometheus metrics (served by ``config.metrics``; names in the README).

The worker counts what it records; the waiting work is read from the database at scrape
time (``WaitingSignatures``), so it holds for every worker process on every machine.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from signing.models import Signature, SignatureStatus, Trigger

SIGNATURES_SIGNED = Counter(
    "signet_signatures_signed",
    "Signatures published (a .sig artifact written and recorded), by what asked for them.",
    ["trigger"],
)
SIGNATURES_FAILED = Counter(
    "signet_signatures_failed",
    "Signing attempts that failed, by error code (the row's failure_code).",
    ["code"],
)
SIGN_LATENCY_SECONDS = Histogram(
    "signet_sign_latency_seconds",
    "From a push event's arrival (its signature row recorded) to its .sig published, "
    "retries included; pushes only.",
    buckets=(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0),
)


def signature_signed(signature: Signature) -> None:
    """Count ``signature``, just recorded as signed (its row as claimed)."""
    SIGNATURES_SIGNED.labels(trigger=signature.trigger).inc()
    if signature.trigger == Trigger.PUSH:
        waited = (timezone.now() - signature.created_at).total_seconds()
        SIGN_LATENCY_SECONDS.observe(max(waited, 0.0))


def signature_failed(code: str) -> None:
    SIGNATURES_FAILED.labels(code=code).inc()


class WaitingSignatures:
    """``signet_signatures_pending`` and ``signet_signatures_oldest_pending_age_seconds``,
    from one indexed query at scrape time."""

    def collect(self) -> Iterator[Metric]:
        waiting = Signature.objects.filter(status=SignatureStatus.PENDING).aggregate(
            count=Count("id"), oldest=Min("created_at")
        )
        oldest = waiting["oldest"]
        age = (timezone.now() - oldest).total_seconds() if oldest else 0.0
        yield GaugeMetricFamily(
            "signet_signatures_pending",
            "Signature rows waiting for their first successful attempt (status pending).",
            value=waiting["count"],
        )
        yield GaugeMetricFamily(
            "signet_signatures_oldest_pending_age_seconds",
            "Seconds since the oldest pending row was recorded (0 when none waits).",
            value=max(age, 0.0),
        )
