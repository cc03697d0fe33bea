"""Which addresses Signet may reach a registry on (``REGISTRY_BACKEND_DENY_NETWORKS``).

An instance editor chooses ``backend_url``; without a policy they could point Signet at
the cloud metadata service (``169.254.169.254``) or any other address the server alone
can reach. The deny list is checked twice:

- when an instance is saved: an IP literal, or every address the host name resolves to
  right now (a name that does not resolve yet is accepted; the second check covers it);
- when a connection is opened, after DNS resolution, on the very address the socket
  connects to: a name that later resolves elsewhere (DNS rebinding), a token realm or a
  blob redirect cannot get around it.

The connect-time check applies to every request of a ``RegistryClient`` built with
``deny_networks`` (``Instance.registry_client`` passes the setting).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util import connection as urllib3_connection

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class BackendAddressDenied(Exception):
    """A connection to an address of a denied network was refused before it was opened.

    Not an ``OSError``: urllib3 and requests let it through unchanged (no retry), and the
    registry client turns it into a ``RegistryError`` naming the address.
    """

    def __init__(self, host: str, address: str, network: Network) -> None:
        # Readers may see this message: the network, not the host or its address.
        super().__init__(
            f"the host resolves to an address inside {network}, which "
            "REGISTRY_BACKEND_DENY_NETWORKS refuses"
        )
        self.host = host
        self.address = address
        self.network = network


def parse_networks(values: Sequence[str]) -> tuple[Network, ...]:
    """``["169.254.0.0/16", "fe80::/10"]`` -> networks; ValueError names a bad entry."""
    networks = []
    for value in values:
        text = str(value).strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(f"{text!r} is not an IP network like 169.254.0.0/16") from None
    return tuple(networks)


def configured_networks() -> tuple[Network, ...]:
    return parse_networks(settings.REGISTRY_BACKEND_DENY_NETWORKS)


def denied_by(address: str, networks: Sequence[Network]) -> Network | None:
    """The network of ``networks`` holding ``address`` (IPv4-mapped IPv6 counts as IPv4)."""
    try:
        ip: Address = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    candidates: list[Address] = [ip]
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        candidates.append(ip.ipv4_mapped)
    for network in networks:
        if any(
            candidate.version == network.version and candidate in network
            for candidate in candidates
        ):
            return network
    return None


def _resolve(host: str, port: int) -> list[tuple[Any, ...]]:
    return socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)


def backend_url_problem(url: str, networks: Sequence[Network] | None = None) -> str:
    """Why ``url`` may not be an instance's backend URL ("" when it may)."""
    networks = configured_networks() if networks is None else networks
    if not networks:
        return ""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not host:
        return ""
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return ""
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        try:
            addresses = [str(info[4][0]) for info in _resolve(host, port)]
        except (OSError, UnicodeError):
            return ""  # not resolvable now: checked again when Signet connects
    for address in addresses:
        network = denied_by(address, networks)
        if network is not None:
            return (
                f"{host} is (or resolves to) {address}, inside {network}: "
                "REGISTRY_BACKEND_DENY_NETWORKS does not let Signet connect there."
            )
    return ""


def _guarded_new_conn(conn: HTTPConnection, networks: Sequence[Network]) -> socket.socket:
    """``HTTPConnection._new_conn`` that resolves, checks every address, then connects to
    the checked address (never resolving twice)."""
    host = conn._dns_host
    try:
        infos = _resolve(host, conn.port or 0)
    except socket.gaierror as exc:
        raise NameResolutionError(conn.host, conn, exc) from exc
    for info in infos:
        address = str(info[4][0])
        network = denied_by(address, networks)
        if network is not None:
            raise BackendAddressDenied(conn.host, address, network)
    error: OSError | None = None
    for info in infos:
        try:
            return urllib3_connection.create_connection(
                (str(info[4][0]), conn.port or 0),
                conn.timeout,
                source_address=conn.source_address,
                socket_options=conn.socket_options,
            )
        except TimeoutError as exc:
            raise ConnectTimeoutError(
                conn, f"Connection to {conn.host} timed out. (connect timeout={conn.timeout})"
            ) from exc
        except OSError as exc:
            error = exc
    raise NewConnectionError(conn, f"Failed to establish a new connection: {error}")


def _connection_class(base: type[HTTPConnection], networks: Sequence[Network]) -> type:
    def _new_conn(self: HTTPConnection) -> socket.socket:
        return _guarded_new_conn(self, networks)

    return type(f"Guarded{base.__name__}", (base,), {"_new_conn": _new_conn})


class DenyNetworksAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` whose connections refuse addresses of ``networks``."""

    def __init__(self, networks: Sequence[Network], **kwargs: Any) -> None:
        self.networks = tuple(networks)
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        pool_classes: dict[str, type] = {}
        for scheme, pool, connection in (
            ("http", HTTPConnectionPool, HTTPConnection),
            ("https", HTTPSConnectionPool, HTTPSConnection),
        ):
            guarded = _connection_class(connection, self.networks)
            pool_classes[scheme] = type(
                f"Guarded{pool.__name__}", (pool,), {"ConnectionCls": guarded}
            )
        self.poolmanager.pool_classes_by_scheme = pool_classes
