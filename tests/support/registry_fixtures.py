"""pytest fixtures that start a real docker-registry (Docker Distribution 2.8).

Registered as a plugin in ``tests/conftest.py``. Every test sees an empty registry.

- ``registry_server``: a running ``RegistryServer`` without notifications or auth. One
  process serves every test of a pytest process (of each xdist worker), its storage on
  tmpfs when there is one; its storage is emptied before each test (with no cache
  configured the registry keeps nothing in memory, so it then holds no repository, blob
  or upload), and it is started again if the previous test stopped it. Signing work still
  running in the background pool is waited for first, so it cannot write into the next
  test's registry.
- ``registry_server_factory``: ``start(**kwargs) -> RegistryServer`` taking the
  ``RegistryServer`` keyword arguments (``notify_url``, ``notify_token``, ``auth``,
  ``extra_config``, ``start_timeout``; ``workdir`` defaults to a fresh pytest temp dir);
  a new process per call, stopped at teardown.
- ``registry_client``: a ``RegistryClient`` for ``registry_server`` (short backoff).
- ``tmpfs_registry``: like ``registry_server_factory``, its storage on tmpfs when there is
  one (for tests that sign a lot), removed at teardown.

``database_url()`` names the test database for the processes a test starts.

If ``/usr/bin/docker-registry`` is missing these fixtures fail (they never skip).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from registry.client import RegistryClient
from signing.dispatch import wait_for_background_work
from tests.support.registry_server import RegistryServer


@pytest.fixture
def registry_server_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., RegistryServer]]:
    started: list[RegistryServer] = []

    def start(**kwargs: Any) -> RegistryServer:
        if kwargs.get("workdir") is None:
            kwargs["workdir"] = tmp_path_factory.mktemp("registry")
        server = RegistryServer(**kwargs)
        started.append(server)
        return server.start()

    yield start
    for server in reversed(started):
        server.stop()


def _scratch_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """On tmpfs when there is one (signing writes many small files), else a pytest temp dir."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return Path(tempfile.mkdtemp(prefix="signet-registry-", dir=shm))
    return tmp_path_factory.mktemp("shared-registry")


@pytest.fixture(scope="session")
def _shared_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    workdir = _scratch_dir(tmp_path_factory)
    server = RegistryServer(workdir=workdir)
    yield server
    server.stop()
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def registry_server(_shared_registry: RegistryServer) -> RegistryServer:
    wait_for_background_work(timeout=30)
    shutil.rmtree(_shared_registry.storage_path, ignore_errors=True)
    _shared_registry.storage_path.mkdir()
    if not _shared_registry.running:
        _shared_registry.stop()  # forget a process that exited or was stopped
        _shared_registry.start()
    return _shared_registry


@pytest.fixture
def registry_client(registry_server: RegistryServer) -> Iterator[RegistryClient]:
    client = RegistryClient(registry_server.url, backoff=0.05)
    yield client
    client.close()


@pytest.fixture
def tmpfs_registry(registry_server_factory) -> Iterator[Callable[..., RegistryServer]]:
    """A registry whose storage is on tmpfs when there is one (signing writes a lot); the
    tmpfs directory goes when the test ends."""
    shm = Path("/dev/shm")
    on_shm = shm.is_dir() and os.access(shm, os.W_OK)
    started: list[RegistryServer] = []

    def start(**kwargs) -> RegistryServer:
        if on_shm:
            kwargs["workdir"] = Path(tempfile.mkdtemp(prefix="signet-registry-", dir=shm))
        started.append(registry_server_factory(**kwargs))
        return started[-1]

    yield start
    for server in started:  # registry_server_factory's own stop() afterwards is a no-op
        server.stop()
        if on_shm:
            shutil.rmtree(server.workdir, ignore_errors=True)


def database_url() -> str:
    """``DATABASE_URL`` of the test's own database (the SQLite file, or the PostgreSQL test
    database), for ``manage.py`` processes a test starts."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    credentials = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{credentials}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
