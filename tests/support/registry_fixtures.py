"""pytest fixtures that start a real docker-registry (Docker Distribution 2.8).

Registered as a plugin in ``tests/conftest.py``. A registry starts in about 40 ms,
so every fixture here is function-scoped: each test gets empty storage.

- ``registry_server``: a running ``RegistryServer`` without notifications or auth.
- ``registry_server_factory``: ``start(**kwargs) -> RegistryServer`` taking the
  ``RegistryServer`` keyword arguments (``notify_url``, ``notify_token``, ``auth``,
  ``extra_config``, ``start_timeout``; ``workdir`` defaults to a fresh pytest temp dir);
  every server it started is stopped at teardown.
- ``registry_client``: a ``RegistryClient`` for ``registry_server`` (short backoff).

If ``/usr/bin/docker-registry`` is missing these fixtures fail (they never skip).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from registry.client import RegistryClient
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


@pytest.fixture
def registry_server(registry_server_factory: Callable[..., RegistryServer]) -> RegistryServer:
    return registry_server_factory()


@pytest.fixture
def registry_client(registry_server: RegistryServer) -> Iterator[RegistryClient]:
    client = RegistryClient(registry_server.url, backoff=0.05)
    yield client
    client.close()
