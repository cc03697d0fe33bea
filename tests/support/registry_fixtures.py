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
