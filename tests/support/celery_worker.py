"""A real Celery broker and real ``celery -A config worker`` processes for the tests.

- ``celery_broker`` (per test): a Redis database and a queue name of the test's own, on
  the Redis this machine runs (127.0.0.1:6379, or ``$SIGNET_TEST_REDIS_URL``); when none
  answers, a ``redis-server`` of this pytest process on a free port. The database number
  follows the xdist worker and the queue name is fresh per test, so parallel tests (and
  other checkouts' test runs on the same Redis) never take each other's tasks. The test
  process (the live server's webhook) sends to it: ``SIGNING_DISPATCH = "celery"``.
- ``start_celery_worker``: ``start(*, concurrency=1, wait=True, **env) -> CeleryWorker``,
  a worker process (with ``concurrency`` pool processes) on the test database consuming
  the test's queue, ready when returned (``wait=False``: started, not waited for; call
  its ``wait_until_ready()``); killed at teardown (before the database flush). With
  ``DJANGO_SETTINGS_MODULE=DEPLOYED`` in ``env`` it runs as deployed (a registered worker
  that dispatches to Celery: tests/support/settings_celery_worker.py). ``kill()`` is a
  crash: SIGKILL to its whole process group.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.db import connection

from tests.support.registry_server import _terminate_with_parent, free_port

READY_SECONDS = 60
# Settings of a worker as deployed (see the module docstring).
DEPLOYED = "tests.support.settings_celery_worker"


@dataclass(frozen=True)
class Broker:
    url: str
    queue: str

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def waiting(self) -> int:
        """Tasks sent to the queue and not yet taken by a worker."""
        with self.client() as client:
            return int(client.llen(self.queue))


def _answers(url: str) -> bool:
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=1) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


@pytest.fixture(scope="session")
def _redis_server() -> Iterator[str]:
    """``redis://host:port`` of a Redis that answers (see the module docstring)."""
    url = os.environ.get("SIGNET_TEST_REDIS_URL", "redis://127.0.0.1:6379")
    if _answers(url):
        yield url.rstrip("/")
        return
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail(f"No Redis answers at {url} and redis-server is not installed.")
    workdir = tempfile.mkdtemp(prefix="signet-redis-")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", workdir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}"
    for _ in range(100):
        if _answers(url):
            break
        time.sleep(0.05)
    yield url
    process.terminate()
    process.wait(timeout=10)
    shutil.rmtree(workdir, ignore_errors=True)


def _database_number() -> int:
    """1..15 by xdist worker (gw0 -> 1); 0 is left to `make run`."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    digits = "".join(c for c in worker if c.isdigit()) or "0"
    return int(digits) % 15 + 1


def use_broker(url: str) -> None:
    """Point this process's Celery app at ``url``: it otherwise keeps sending through the
    connection pool it made for the broker it used first (Celery has no public call for
    this; kombu's pools for each URL stay open for whoever uses that URL again)."""
    from config.celery import app

    app.conf.broker_url = url
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def celery_broker(_redis_server: str, settings) -> Iterator[Broker]:
    broker = Broker(f"{_redis_server}/{_database_number()}", f"signet-test-{uuid.uuid4().hex}")
    settings.SIGNING_DISPATCH = "celery"
    settings.CELERY_BROKER_URL = broker.url
    settings.CELERY_TASK_DEFAULT_QUEUE = broker.queue
    use_broker(broker.url)
    yield broker
    use_broker(broker.url)
    with broker.client() as client:
        client.delete(broker.queue)


def _database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    credentials = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{credentials}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


class CeleryWorker:
    """``celery -A config worker`` in its own process, on the test's database and queue;
    its log (stdout and stderr) goes to ``log_path``."""

    def __init__(self, broker: Broker, log_path: Path, *, concurrency: int = 1, **env: str) -> None:
        self.log_path = log_path
        self.name = f"signet-test-{uuid.uuid4().hex[:8]}@%h"
        environment = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings_test",
            "DATABASE_URL": _database_url(),
            "PYTHONPATH": str(settings.BASE_DIR),
            "CELERY_BROKER_URL": broker.url,
            "CELERY_TASK_DEFAULT_QUEUE": broker.queue,
            "LOG_LEVEL": "INFO",
            **env,
        }
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "config",
                    "worker",
                    "--hostname",
                    self.name,
                    "--concurrency",
                    str(concurrency),
                    "--without-gossip",
                    "--without-mingle",
                    "--loglevel",
                    "INFO",
                ],
                cwd=settings.BASE_DIR,
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own process group: stop() ends the pool's child processes too.
                start_new_session=True,
                preexec_fn=_terminate_with_parent,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_until_ready(self) -> CeleryWorker:
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            if " ready." in self.log():
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"the Celery worker did not start:\n{self.log()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL to the whole process group (the main process and its pool children): a
        crash, nothing is given back to the broker or released in the database."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        """Warm shutdown (running tasks finish), killed after 10 s."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)


@pytest.fixture
def start_celery_worker(
    celery_broker: Broker, tmp_path: Path
) -> Iterator[Callable[..., CeleryWorker]]:
    started: list[CeleryWorker] = []

    def start(*, concurrency: int = 1, wait: bool = True, **env: str) -> CeleryWorker:
        log_path = tmp_path / f"celery-worker-{len(started)}.log"
        started.append(CeleryWorker(celery_broker, log_path, concurrency=concurrency, **env))
        return started[-1].wait_until_ready() if wait else started[-1]

    yield start
    for worker in started:
        worker.stop()
