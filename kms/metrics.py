"""The KMS's Prometheus metrics (served by ``config.metrics``; names in the README)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from prometheus_client import Histogram

P = ParamSpec("P")
R = TypeVar("R")

KMS_SIGN_SECONDS = Histogram(
    "signet_kms_sign_seconds",
    "Time of one KMS sign call as the caller sees it (failed calls included).",
    ["backend"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)


def timed_sign(backend: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Time every call of a client's ``sign`` in ``signet_kms_sign_seconds{backend}``."""
    histogram = KMS_SIGN_SECONDS.labels(backend=backend)

    def decorate(sign: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(sign)
        def timed(*args: P.args, **kwargs: P.kwargs) -> R:
            with histogram.time():
                return sign(*args, **kwargs)

        return timed

    return decorate
