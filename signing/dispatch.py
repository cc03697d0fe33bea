"""Runs slow signing work off the request path, after commit.

``SIGNING_DISPATCH = "celery"`` (the default when ``CELERY_BROKER_URL`` is set) sends the
work as Celery tasks (``signing/tasks.py``) to workers on any machine sharing the
database; ``"thread"`` (the default without a broker) hands it to a small in-process
thread pool, so the registry webhook answers at once; ``"inline"`` runs it on the spot
(tests, one-shot commands). Either way the work starts from durable rows: if the process
dies first, or the broker is down, they stay pending and the periodic recovery (or
``manage.py retry_signatures``) finishes them.
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


# The Celery task that runs each service function handed to ``dispatch`` (by the
# function's dotted path; signing/tasks.py defines them). Each takes a list of row ids.
TASKS = {
    "signing.services.worker.sign_signatures": "signing.tasks.sign_signatures",
    "signing.services.cleanups.run_cleanups": "signing.tasks.remove_artifacts",
}


def dispatch(func: Callable[..., Any], *args: Any) -> None:
    if settings.SIGNING_DISPATCH == "inline":
        func(*args)
        return
    # The workers have their own database connections: hand the work over once the
    # caller's transaction (if any) has committed the rows it starts from.
    if settings.SIGNING_DISPATCH == "celery":
        transaction.on_commit(lambda: _send(func, *args))
    else:
        transaction.on_commit(lambda: _submit(func, *args))


def _send(func: Callable[..., Any], ids: list[int]) -> None:
    """Send ``func(ids)`` as tasks of at most ``SIGNING_TASK_BATCH_SIZE`` ids each."""
    # Imported here: only processes that send tasks need the Celery app.
    from config.celery import app

    name = TASKS[f"{func.__module__}.{func.__qualname__}"]
    size = settings.SIGNING_TASK_BATCH_SIZE
    ids = list(ids)
    try:
        for start in range(0, len(ids), size):
            # The queue is read at send time, as the workers are started with it.
            app.send_task(
                name, args=[ids[start : start + size]], queue=settings.CELERY_TASK_DEFAULT_QUEUE
            )
    except Exception:
        # The commit is done and the caller (the webhook) must not fail for it: the rows
        # stay pending and the periodic recovery hands them to a worker.
        logger.exception("sending %s to the broker failed; recovery will pick the rows up", name)


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
