"""gunicorn's configuration for Signet (``scripts/serve``, ``make serve``).

Read from the environment, each with a default fit for a small machine:

- ``SIGNET_WEB_BIND``: the address to listen on (``127.0.0.1:8000``; the TLS proxy in front
  passes requests there). Several addresses: separated by commas.
- ``SIGNET_WEB_WORKERS``: worker processes (2). Each answers requests on its own threads.
- ``SIGNET_WEB_THREADS``: threads per worker (4, gunicorn's ``gthread`` workers): requests
  mostly wait on the database, so threads are cheaper than more processes.
- ``SIGNET_WEB_TIMEOUT``: seconds a worker may stay silent before gunicorn replaces it (30);
  also how long a stopping worker may finish its requests.
- ``SIGNET_WEB_KEEPALIVE``: seconds an idle keep-alive connection is kept (5).

The access log goes to standard output without the query string, the referrer or the
user name: nothing a request carries as a credential (the ``Authorization`` header, a token
in a URL) is ever written.
"""

from __future__ import annotations

import os
from typing import Any


def _positive(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip() or str(default)
    if not value.isdigit() or int(value) < 1:
        raise SystemExit(f"{name} must be a whole number of at least 1, not {value!r}.")
    return int(value)


bind = [
    address.strip()
    for address in os.environ.get("SIGNET_WEB_BIND", "127.0.0.1:8000").split(",")
    if address.strip()
]
workers = _positive("SIGNET_WEB_WORKERS", 2)
threads = _positive("SIGNET_WEB_THREADS", 4)
worker_class = "gthread" if threads > 1 else "sync"
timeout = _positive("SIGNET_WEB_TIMEOUT", 30)
graceful_timeout = timeout
keepalive = _positive("SIGNET_WEB_KEEPALIVE", 5)
wsgi_app = "config.wsgi:application"

accesslog = "-"
errorlog = "-"
# No control socket (gunicornc): its default path is shared by every gunicorn of the user.
control_socket_disable = True
# Client address, time, method and path (never the query string), status, bytes, duration
# in milliseconds, user agent.
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms "%(a)s"'


def on_starting(server: Any) -> None:
    """Before the workers start: forget the metric files of processes that have ended."""
    from config.metrics_files import remove_dead_process_files

    remove_dead_process_files()


def child_exit(server: Any, worker: Any) -> None:
    """A worker ended: its gauges stop counting (its counters stay in the sums)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
