"""The registry app's Prometheus metrics (served by ``config.metrics``; names in the
README): webhook deliveries and the registry client's failed requests."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Concatenate, ParamSpec, TypeVar

from django.http import HttpRequest, HttpResponse
from prometheus_client import Counter

from registry.errors import RegistryError

if TYPE_CHECKING:
    from registry.services.recording import RecordResult

P = ParamSpec("P")
R = TypeVar("R")

WEBHOOK_EVENTS = Counter(
    "signet_webhook_events",
    "Registry notifications by outcome: recorded, duplicate (an event id seen before) and "
    "ignored count events; rejected counts deliveries answered 4xx (nothing recorded).",
    ["outcome"],
)
for _outcome in ("recorded", "duplicate", "ignored", "rejected"):
    WEBHOOK_EVENTS.labels(outcome=_outcome)

REGISTRY_REQUEST_ERRORS = Counter(
    "signet_registry_request_errors",
    "Registry requests that failed (after the client's retries), by error code.",
    ["kind"],
)


def count_recorded_events(result: RecordResult) -> None:
    WEBHOOK_EVENTS.labels(outcome="recorded").inc(result.processed)
    WEBHOOK_EVENTS.labels(outcome="duplicate").inc(result.duplicates)
    WEBHOOK_EVENTS.labels(outcome="ignored").inc(result.ignored)


def count_rejected_deliveries(
    view: Callable[Concatenate[HttpRequest, P], R],
) -> Callable[Concatenate[HttpRequest, P], R]:
    """Count the deliveries ``view`` answers with a 4xx."""

    @functools.wraps(view)
    def counted(request: HttpRequest, *args: P.args, **kwargs: P.kwargs) -> R:
        response = view(request, *args, **kwargs)
        if isinstance(response, HttpResponse) and 400 <= response.status_code < 500:
            WEBHOOK_EVENTS.labels(outcome="rejected").inc()
        return response

    return counted


def count_request_errors(request: Callable[P, R]) -> Callable[P, R]:
    """Count the registry errors a client request raises, by their code."""

    @functools.wraps(request)
    def counted(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return request(*args, **kwargs)
        except RegistryError as exc:
            REGISTRY_REQUEST_ERRORS.labels(kind=exc.code).inc()
            raise

    return counted
