"""``GET /metrics``: Signet's metrics in the Prometheus text format.

Prometheus authenticates with ``Authorization: Bearer <SIGNET_METRICS_TOKEN>`` (compared in
constant time). Without the header, or with another token, the answer is 401; with the
setting empty the endpoint is off and answers 403 to everyone.

Two sources, because the web and the signing workers are separate processes:

- Counters and histograms (``signet_*_total``, ``*_seconds``) are kept by the process that
  counts (``prometheus_client``). Processes that share ``PROMETHEUS_MULTIPROC_DIR`` (every
  gunicorn worker, and workers started on the same machine with the same directory) write
  them to files there, and a scrape adds the files up; without the variable (``make run``,
  the tests) the numbers are this process's own.
- Gauges of the work waiting (pending signatures, the oldest one's age) are read from the
  database at scrape time by the collectors apps register here (``register_collector`` in
  their ``AppConfig.ready()``): the database is the one place that knows them for every
  process on every machine.

The metric definitions live in the app that counts: ``kms.metrics``, ``registry.metrics``,
``signing.metrics``.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterable, Iterator
from typing import Protocol

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector


class Collector(Protocol):
    def collect(self) -> Iterable[Metric]: ...


_collectors: dict[str, Collector] = {}


def register_collector(name: str, collector: Collector) -> None:
    """Add ``collector`` to every scrape (once per ``name``)."""
    _collectors[name] = collector


class _Scrape:
    """What one scrape answers: the counted metrics, then the registered collectors'."""

    def collect(self) -> Iterator[Metric]:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            yield from registry.collect()
        else:
            yield from REGISTRY.collect()
        for collector in _collectors.values():
            yield from collector.collect()


def _error(status: int, code: str, message: str) -> JsonResponse:
    response = JsonResponse({"code": code, "message": message}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="signet-metrics"'
    return response


def _refused(request: HttpRequest) -> JsonResponse | None:
    """The answer to a request without the metrics token, or None."""
    expected = settings.SIGNET_METRICS_TOKEN
    if not expected:
        return _error(
            403, "UnauthorizedOperation", "Metrics are off: set SIGNET_METRICS_TOKEN to scrape."
        )
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.strip().encode(), expected.encode()
    ):
        return _error(
            401, "AuthFailure", "Send the metrics token as 'Authorization: Bearer <token>'."
        )
    return None


def metrics(request: HttpRequest) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        response = _error(405, "UnsupportedOperation", "Only GET is allowed here.")
        response["Allow"] = "GET, HEAD"
        return response
    refused = _refused(request)
    if refused is not None:
        return refused
    answer = HttpResponse(generate_latest(_Scrape()), content_type=CONTENT_TYPE_LATEST)
    answer["Cache-Control"] = "no-store"
    return answer
