"""Signet as production runs it: ``scripts/serve`` (collectstatic, then gunicorn with
config/gunicorn.py) in its own process group, on a free loopback port and the test's own
database, with the production settings (``config.settings``, DEBUG off) and a metrics
directory shared by its workers (``PROMETHEUS_MULTIPROC_DIR``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.db import connection

from tests.support.registry_server import _terminate_with_parent, free_port

METRICS_TOKEN = "metrics-token-for-tests-" + "m" * 24
START_SECONDS = 60.0


def database_url() -> str:
    """The test database as a DATABASE_URL, for processes started by a test."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    credentials = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{credentials}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@dataclass
class Gunicorn:
    url: str
    log: Path
    static_root: Path
    metrics_dir: Path
    process: subprocess.Popen

    def get(self, path: str, **kwargs) -> requests.Response:
        return requests.get(self.url + path, timeout=30, **kwargs)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_gunicorn(workdir: Path, **extra_env: str) -> Gunicorn:
    port = free_port()
    log = workdir / "gunicorn.log"
    static_root, metrics_dir = workdir / "static", workdir / "metrics"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "SIGNET_ENV_FILE": "/nonexistent",
        "DEBUG": "0",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SESSION_COOKIE_SECURE": "0",
        "CSRF_COOKIE_SECURE": "0",
        "DATABASE_URL": database_url(),
        "SIGNET_STATIC_ROOT": str(static_root),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "SIGNET_METRICS_TOKEN": METRICS_TOKEN,
        "SIGNET_WEB_BIND": f"127.0.0.1:{port}",
        "SIGNET_WEB_WORKERS": "2",
        "SIGNET_WEB_THREADS": "2",
        "PYTHON": sys.executable,
        "PYTHONPATH": str(settings.BASE_DIR),
        **extra_env,
    }
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(settings.BASE_DIR / "scripts" / "serve")],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            preexec_fn=_terminate_with_parent,
        )
    server = Gunicorn(f"http://127.0.0.1:{port}", log, static_root, metrics_dir, process)
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"scripts/serve exited {process.returncode}:\n{server.log_text()}")
        try:
            if requests.get(server.url + "/healthz", timeout=10).status_code == 200:
                return server
        except requests.RequestException:  # not listening yet, or a worker still loading
            pass
        time.sleep(0.2)
    server.stop()
    raise AssertionError(
        f"gunicorn did not answer within {START_SECONDS:.0f}s:\n{server.log_text()}"
    )


@pytest.fixture
def gunicorn(transactional_db: None, tmp_path: Path) -> Iterator[Gunicorn]:
    server = start_gunicorn(tmp_path)
    yield server
    server.stop()
