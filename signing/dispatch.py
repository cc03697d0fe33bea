"""Runs slow signing work off the request path, after commit.

``SIGNING_DISPATCH = "thread"`` (default) hands the work to a small in-process thread
pool, so the registry webhook answers at once; ``"inline"`` runs it on the spot (tests,
one-shot commands). Either way the work starts from durable rows: if the process dies
first, ``manage.py retry_signatures`` finds them pending and finishes them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connections, transaction

logger = logging.getLogger(__name__)

_executor: ThreadPoolExecutor | None = None
_lock = threading.Lock()
_futures: set[Future] = set()


def _pool() -> ThreadPoolExecutor:
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(
                max_workers=settings.SIGNING_WORKER_THREADS, thread_name_prefix="signet-signing"
            )
        return _executor


def _run(func: Callable[..., Any], *args: Any) -> Any:
    close_old_connections()
    try:
        return func(*args)
    except Exception:
        logger.exception("background signing work failed; retry_signatures will pick it up")
        return None
    finally:
        connections.close_all()


def dispatch(func: Callable[..., Any], *args: Any) -> None:
    if settings.SIGNING_DISPATCH == "inline":
        func(*args)
        return
    # The pool's threads have their own database connections: hand the work over once the
    # caller's transaction (if any) has committed the rows it starts from.
    transaction.on_commit(lambda: _submit(func, *args))


def _submit(func: Callable[..., Any], *args: Any) -> None:
    future = _pool().submit(_run, func, *args)
    with _lock:
        _futures.add(future)
    future.add_done_callback(_forget)


def _forget(future: Future) -> None:
    with _lock:
        _futures.discard(future)


def wait_for_background_work(timeout: float = 30.0) -> bool:
    """Block until dispatched work has finished (tests and graceful shutdown)."""
    with _lock:
        pending = list(_futures)
    for future in pending:
        try:
            future.result(timeout=timeout)
        except Exception:
            return False
    return True
