"""One registry client per worker thread and instance, kept across the images it signs.

A client built per batch opens new connections and goes through the token flow again;
kept, its keep-alive connections and its tokens (cached per scope until they expire)
serve every image the thread signs. ``requests.Session`` is not shared between threads,
so each thread has its own; a forked process builds its own too.

A client is built again when anything its configuration comes from changes in the
database (address, authentication, sealed secret, environment variable name, name).
"""

from __future__ import annotations

import hashlib
import os
import threading

from registry.client import RegistryClient
from registry.models import Instance

_local = threading.local()


def _configuration(instance: Instance) -> tuple[object, ...]:
    sealed = bytes(instance.sealed_secret) if instance.sealed_secret is not None else b""
    return (
        os.getpid(),
        instance.name,
        instance.backend_url,
        instance.auth_type,
        instance.username,
        instance.secret_env,
        hashlib.sha256(sealed).hexdigest(),
    )


def worker_client(instance: Instance) -> RegistryClient:
    """This thread's client for ``instance`` (``Instance.registry_client``), kept for the
    next call while the instance's configuration stays the same."""
    clients: dict[int, tuple[tuple[object, ...], RegistryClient]] | None = getattr(
        _local, "clients", None
    )
    if clients is None:
        clients = _local.clients = {}
    configuration = _configuration(instance)
    kept = clients.get(instance.pk)
    if kept is not None:
        if kept[0] == configuration:
            return kept[1]
        if kept[0][0] == os.getpid():
            kept[1].close()  # a forked child leaves its parent's connections alone
    client = instance.registry_client()
    clients[instance.pk] = (configuration, client)
    return client


def forget_worker_clients() -> None:
    """Close and drop this thread's clients (a thread that ends, a test)."""
    clients = getattr(_local, "clients", None) or {}
    for configuration, client in clients.values():
        if configuration[0] == os.getpid():
            client.close()
    clients.clear()
