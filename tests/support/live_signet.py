"""The live Signet a real registry notifies (pytest-django ``live_server``), for the
end-to-end tests of the registry and signing apps."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connections

from signing.dispatch import wait_for_background_work

_BUSY = """
    SELECT count(*) FROM pg_stat_activity
    WHERE datname = current_database() AND pid <> pg_backend_pid()
      AND state IN ('active', 'idle in transaction', 'idle in transaction (aborted)')
"""


def signet_url(live_server: Any) -> str:
    return live_server.url.replace("://localhost:", "://127.0.0.1:")


def _idle() -> bool:
    # The live server may share this thread's connection: while a delivery's transaction
    # is open, reads here would see its rows half-written.
    return not connections["default"].in_atomic_block


def wait_for(predicate: Callable[[], bool], what: str, *, seconds: float) -> None:
    """Until ``predicate()`` holds (checked outside any delivery's transaction)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _idle() and predicate() and _idle():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {seconds:.0f}s waiting for {what}")


def wait_for_quiet_database(timeout: float = 20.0) -> bool:
    """Until no other connection to the test database is busy (PostgreSQL).

    A notification the live server is still handling when a test ends, or the signing it
    started, must not meet the test's flush: TRUNCATE against an open row lock deadlocks.
    """
    deadline = time.monotonic() + timeout
    quiet = 0
    while time.monotonic() < deadline:
        wait_for_background_work(timeout=max(deadline - time.monotonic(), 0.1))
        connection = connections["default"]
        if connection.vendor != "postgresql":
            return True
        with connection.cursor() as cursor:
            cursor.execute(_BUSY)
            busy = cursor.fetchone()[0]
        quiet = quiet + 1 if busy == 0 else 0
        if quiet >= 3:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def signet(live_server: Any) -> Iterator[Any]:
    """The live server; on the way out, the requests it was still handling are done.

    Set up before the registries that notify it, so torn down after they have stopped: it
    then waits until the notifications they sent, and the signing those started, are
    finished, and the test's flush meets no open transaction. (The SQLite test database is
    a file, not shared-cache memory, so the server's threads use connections of their own.)
    """
    yield live_server
    assert wait_for_quiet_database(), "the live server was still busy 20 s after the test"
